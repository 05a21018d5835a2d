"""Data-quality checks on tables: great-expectations suites and checks that need more than an expectation."""
