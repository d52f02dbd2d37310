/* http_status.c: placeholder so the library links while the implementation is written. */
#include "http_status.h"
