# emine — top-level build.  `make` builds everything into $(BUILD)/.
# Dependencies are found with pkg-config; `make deps` installs the Debian packages that are missing.

BUILD    ?= build
CC       ?= cc
PKGS     := libzmq jansson hiredis libpq libmicrohttpd inih openssl libcurl libpcre2-8
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Icommon $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
ifeq ($(SANITIZE),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

SERVICES := ingest validate archive notify

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
LIBEMINE   := $(BUILD)/lib/libemine.a

# Each service is a library (every .c but main.c) plus a thin main.c.
svc_lib  = $(BUILD)/lib/lib$(1).a
svc_objs = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out services/$(1)/main.c,$(wildcard services/$(1)/*.c)))
SVC_LIBS := $(foreach s,$(SERVICES),$(call svc_lib,$(s)))
BINS     := $(foreach s,$(SERVICES),$(BUILD)/bin/emine-$(s)) $(BUILD)/bin/eminectl

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test test-unit test-integration check run up down bench memcheck format clean
all: $(BINS) $(UNIT_BINS)

deps:
	@sh deploy/local/deps.sh

$(BUILD)/obj/%.o: %.c $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIBEMINE): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

define SERVICE_RULES
$(call svc_lib,$(1)): $(call svc_objs,$(1))
	@mkdir -p $$(dir $$@)
	$$(AR) rcs $$@ $$^
$(BUILD)/bin/emine-$(1): $(BUILD)/obj/services/$(1)/main.o $(call svc_lib,$(1)) $(LIBEMINE)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call SERVICE_RULES,$(s))))

EMINECTL_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/eminectl/*.c))
$(BUILD)/bin/eminectl: $(EMINECTL_OBJ) $(LIBEMINE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests (cmocka) link libemine and every service library, so services are testable in-process.
$(BUILD)/tests/%: tests/unit/%.c $(SVC_LIBS) $(LIBEMINE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(SVC_LIBS) $(LIBEMINE) $(LDLIBS) $(shell pkg-config --libs cmocka)

# The whole suite: unit, integration, end to end and fault tests against real PostgreSQL,
# Redis and ZeroMQ started by the harness in a temporary folder; then the same tests built
# with AddressSanitizer and UndefinedBehaviorSanitizer.
test: all
	@bash tests/run.sh $(BUILD)
	@$(MAKE) --no-print-directory BUILD=build-san SANITIZE=1 all
	@EMINE_SANITIZED=1 bash tests/run.sh build-san

check: test

# The container deployment on a real Docker engine: base images (debootstrap when missing),
# the image, deploy/compose.yaml and an end-to-end smoke; deploy/k8s and deploy/systemd checks.
.PHONY: test-containers
test-containers:
	@bash tests/containers/test_containers.sh

run: deps all
	@bash deploy/local/stack.sh run

up: deps all
	@bash deploy/local/stack.sh up

down:
	@bash deploy/local/stack.sh down

# Benchmarks (never timed tests): the pipeline's durable events/s and ack latency, the event
# catalogue's schemas against ajv (ratios), and webhook delivery latency and throughput.
bench: all
	@bash tests/bench/run.sh $(BUILD)
	@bash tests/schema/bench_catalogue.sh $(BUILD)
	@bash tests/bench/webhooks.sh $(BUILD)
	@RATE=50 EVENTS=500 bash tests/bench/webhooks.sh $(BUILD)

memcheck: all
	@for t in $(UNIT_BINS); do valgrind --error-exitcode=1 --leak-check=full -q $$t || exit 1; done

format:
	clang-format -i common/*.[ch] services/*/*.[ch] tools/*/*.[ch] tests/unit/*.c

clean:
	rm -rf build build-san build-*
