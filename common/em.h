/* em.h - libemine umbrella header for the services and tools. */
#ifndef EM_H
#define EM_H
#include "em_bus.h"
#include "em_cache.h"
#include "em_config.h"
#include "em_event.h"
#include "em_http.h"
#include "em_json.h"
#include "em_log.h"
#include "em_metrics.h"
#include "em_signal.h"
#include "em_store.h"
#include "em_util.h"
#endif
