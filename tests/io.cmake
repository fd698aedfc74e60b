# Tests of io/ (owned with io/).
