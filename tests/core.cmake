# Tests of core/ (owned with core/).
