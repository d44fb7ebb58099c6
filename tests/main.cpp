// tests/main.cpp — the doctest main, compiled once and linked into metagrad_tests and metagrad_cuda_tests.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
