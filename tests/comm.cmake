# Tests of comm/ (owned with comm/).
