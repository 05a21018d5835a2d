"""The teacher: grading prompts and answers, recorded and ensemble teachers, and routing pairs to the teacher
(the cost dial)."""
