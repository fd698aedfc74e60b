# Tests of runtime/ (owned with runtime/).
