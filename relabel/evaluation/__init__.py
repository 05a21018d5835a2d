"""Evaluation: human judgments, agreement metrics, the agreement report, its plots, and cost and speed."""
