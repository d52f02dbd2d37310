/* metrics.c: placeholder so the library links while the implementation is written. */
#include "metrics.h"
