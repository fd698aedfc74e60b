# Tests of attention/ (owned with attention/).
