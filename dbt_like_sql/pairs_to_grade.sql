-- group: labeling
-- pairs_to_grade: every (query, document) pair the teacher and the student grade, with the text they read:
-- the candidate pools' pairs of the synthetic queries ('pool') and the human-judged pairs ('benchmark')
select
    'pool' as pair_source,
    pools.qid,
    queries.query_text,
    docs.doc_id,
    docs.title,
    docs.author,
    docs.path,
    docs.modified,
    docs.doc_type,
    docs.text
from candidate_pools as pools
inner join synthetic_queries as queries on pools.qid = queries.qid
inner join seed_corpus as docs on pools.doc_id = docs.doc_id

union all

select 'benchmark' as pair_source, qid, query_text, doc_id, title, author, path, modified, doc_type, text
from human_benchmark

order by pair_source, qid, doc_id
