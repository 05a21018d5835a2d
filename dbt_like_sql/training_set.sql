-- training_set: teacher-graded candidate-pool pairs with query and document text and the teacher's grade
-- probabilities (null when it gave none), for the student
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
)

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
order by graded.qid, graded.doc_id
