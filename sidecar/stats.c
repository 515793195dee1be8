/* sidecar/stats.c: nothing but the header's inline helpers today; kept so the counters have a
 * home for functions that outgrow the header. */
#include "stats.h"
