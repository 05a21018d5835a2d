-- group: training
-- training_set: teacher-graded pairs with query and document text and the teacher's grade probabilities
-- (null when it gave none), for the student: the graded candidate-pool pairs of pairs_to_grade, plus the
-- teacher's sampled labels of inbox batches (newest per pair, which wins)
with inbox_graded as (
    select
        qid, query_text, doc_id, title, doc_text, grade, expected_grade, p0, p1, p2, p3,
        labeler_id as teacher_id
    from inbox_teacher_labels
    where status = 'ok'
    qualify row_number() over (partition by qid, doc_id order by labeled_at desc) = 1
),

pipeline_graded as (
    select
        graded.qid,
        pairs.query_text,
        graded.doc_id,
        pairs.title,
        pairs.text as doc_text,
        graded.grade,
        graded.expected_grade,
        graded.p0,
        graded.p1,
        graded.p2,
        graded.p3,
        graded.labeler_id as teacher_id
    from teacher_labels as graded
    inner join pairs_to_grade as pairs
        on graded.pair_source = pairs.pair_source and graded.qid = pairs.qid and graded.doc_id = pairs.doc_id
    where graded.status = 'ok' and graded.pair_source = 'pool'
        and not exists (
            select 1 from inbox_graded
            where inbox_graded.qid = graded.qid and inbox_graded.doc_id = graded.doc_id
        )
)

select * from pipeline_graded
union all
select * from inbox_graded
order by qid, doc_id
