"""Tests of fisproxy.proxy."""
