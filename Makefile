# vigil — one GNU Makefile for the server, its tests, fuzzers and benchmarks.
#
#   make demo    install what is missing, build, run the pipeline with a simulated fleet
#   make test    the whole test suite (unit, unit under ASan+UBSan, fuzz seeds, integration, e2e)
#   make bench   benchmarks; writes docs/benchmarks.md
#   make fuzz    longer libFuzzer campaigns (FUZZ_SECONDS per harness)

CC       ?= cc
CSTD     := -std=c17 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-format-truncation
OPT      ?= -O2 -g
CFLAGS   += $(CSTD) $(WARN) $(OPT) -Isrc -pthread -MMD -MP
LDLIBS   += -lsqlite3 -lssl -lcrypto -largon2 -lcurl -lpthread -lm
ASAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

BUILD    := build
LIB_SRC  := $(filter-out src/app/main.c,$(shell find src -name '*.c' | sort))
APP_SRC  := src/app/main.c
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
ASAN_OBJ := $(LIB_SRC:%.c=$(BUILD)/asan/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
ASAN_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan-tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all deps demo test unit asan fuzz-build fuzz bench clean
.DEFAULT_GOAL := all

all: $(BUILD)/vigil

deps:
	@scripts/deps.sh

# V=1 shows the full compiler command lines.
Q := $(if $(V),,@)

$(BUILD)/vigil: $(LIB_OBJ) $(BUILD)/obj/src/app/main.o
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/asan/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC/ASAN $<"
	$(Q)$(CC) $(CFLAGS) $(ASAN) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB_OBJ) $(LDLIBS)

$(BUILD)/asan-tests/%: tests/unit/%.c $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CFLAGS) $(ASAN) -Itests/unit -o $@ $< $(ASAN_OBJ) $(LDLIBS)

# The MQTT load generator of the gateway benchmarks (bench/run.sh g1-g3).
$(BUILD)/mqtt_load: bench/mqtt_load.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

# The TLS handshake load tool of the TLS rows (bench/run.sh t1, t2).
$(BUILD)/tls_hs: bench/tls_hs.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

# The idle fleet of the cost row (bench/run.sh e): N idle MQTT connections
# with keepalive PINGREQs. Standalone on purpose (see its header): it does
# not link the library, only the open-file-limit raise.
$(BUILD)/idle_fleet: bench/idle_fleet.c src/core/rlimit.c
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^

# The detector benchmark (bench/run.sh d): ns per event, bytes per device.
$(BUILD)/detect_bench: bench/detect_bench.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

# libFuzzer harnesses need clang. The library is compiled once for fuzzing
# (coverage + ASan + UBSan, no libFuzzer main) and every harness links it;
# compiling it per harness cost a whole-tree build each.
FUZZ_CC     := clang
FUZZ_CFLAGS := $(CSTD) -O1 -g -Isrc -pthread -fsanitize=fuzzer,address,undefined
FUZZ_OBJ    := $(LIB_SRC:%.c=$(BUILD)/fuzzobj/%.o)
$(BUILD)/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC/FUZZ $<"
	$(Q)$(FUZZ_CC) $(CSTD) -O1 -g -Isrc -pthread -MMD -MP -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

# The server itself under ASan+UBSan, for the sanitized gateway test tier.
$(BUILD)/vigil-asan: $(ASAN_OBJ) $(BUILD)/asan/src/app/main.o
	@echo "  LD/ASAN $@"
	$(Q)$(CC) $(CFLAGS) $(ASAN) -o $@ $^ $(LDLIBS)

# Keep the sanitizer objects between runs (they are intermediates of the
# asan test binaries and make would delete them).
.SECONDARY: $(ASAN_OBJ) $(BUILD)/asan/src/app/main.o

unit: $(UNIT_BIN)
asan: $(ASAN_BIN)
fuzz-build: $(FUZZ_BIN)

test: deps
	@$(MAKE) --no-print-directory -j$$(nproc) all unit asan fuzz-build $(BUILD)/vigil-asan
	@tests/run.sh

fuzz: deps fuzz-build
	@tests/fuzz/run.sh $${FUZZ_SECONDS:-300}

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/mqtt_load $(BUILD)/detect_bench $(BUILD)/idle_fleet $(BUILD)/tls_hs
	@bench/run.sh

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
