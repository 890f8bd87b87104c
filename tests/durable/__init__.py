"""Helpers of the reliability tests (`tests/test_reliability.py`): the shared
timeline and checks (`harness`), and the worker script the tests run as a
subprocess and kill (`worker_process`)."""
