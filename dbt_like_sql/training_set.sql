-- training_set: teacher-graded pairs with query and document text and the teacher's grade probabilities
-- (null when it gave none), for the student: the full pipeline's candidate-pool pairs, plus the teacher's
-- sampled labels of inbox batches (newest per pair, which wins)
with graded as (
    select qid, doc_id, grade, expected_grade, p0, p1, p2, p3, labeler_id
    from teacher_labels
    where status = 'ok' and pair_source = 'pool'
),

queries as (
    select qid, query_text from synthetic_queries
),

documents as (
    select doc_id, title, text as doc_text from seed_corpus
),

inbox_graded as (
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
        queries.query_text,
        graded.doc_id,
        documents.title,
        documents.doc_text,
        graded.grade,
        graded.expected_grade,
        graded.p0,
        graded.p1,
        graded.p2,
        graded.p3,
        graded.labeler_id as teacher_id
    from graded
    inner join queries on graded.qid = queries.qid
    inner join documents on graded.doc_id = documents.doc_id
    where not exists (
        select 1 from inbox_graded where inbox_graded.qid = graded.qid and inbox_graded.doc_id = graded.doc_id
    )
)

select * from pipeline_graded
union all
select * from inbox_graded
order by qid, doc_id
