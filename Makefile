# The one-command wrapper: make run, make test, make soak, make asan, make tsan, make fuzz, make bench.
BUILD ?= build
CMAKE_ARGS ?=

# Each target installs only what it needs (scripts/install-deps.sh PROFILE).
all: deps-build
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_ARGS) >/dev/null && cmake --build $(BUILD)
deps:
	@./scripts/install-deps.sh all
deps-%:
	@./scripts/install-deps.sh $*
run: deps-run all
	$(BUILD)/tools/nxl-bench/nxl-bench --backend SHM --op_type READ,WRITE
test: deps-test all
	./tests/run_all.sh $(BUILD)
soak: deps-test all
	$(BUILD)/tools/nxl-soak/nxl-soak --duration $(or $(SOAK_SECONDS),3600) $(or $(SOAK_ARGS),--avoid-known)
asan:
	$(MAKE) BUILD=build-asan CMAKE_ARGS="-DNXL_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug" test
# ThreadSanitizer (clang): the suite with per-case timeouts x4 (harness.c);
# any report fails the run (run_all.sh); nothing is suppressed. die_after_fork=0
# lets a test fork a peer after its own threads started (TSan then ignores
# the child's main thread, not the threads it starts); UCX_MEM_EVENTS=no
# keeps UCX's malloc hooks from crashing at start under TSan.
tsan: deps-tsan
	UCX_MEM_EVENTS=no TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 die_after_fork=0 $(TSAN_OPTIONS)" \
	  $(MAKE) BUILD=build-tsan CMAKE_ARGS="-DCMAKE_C_COMPILER=clang -DNXL_SANITIZE=thread" test
faults: deps-test
	$(MAKE) BUILD=build-asan CMAKE_ARGS="-DNXL_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug" all
	./tests/faults.sh build-asan $(or $(NXL_FAULT),all=0.01)
fuzz: deps-fuzz
	./fuzz/run.sh build-fuzz $(FUZZ_SECONDS)
# The tables of docs/performance.md: bench-results/results.json and a PNG per
# table. BENCH_ROUNDS (3), BENCH_ONLY (shm,shm_shared,ucx,tcp,posix,kv,scale),
# BENCH_QUICK=1 (few sizes and iterations), BENCH_OUT (bench-results).
bench: deps-bench all
	/usr/bin/python3 bench/make_bench.py --build $(BUILD) --out $(or $(BENCH_OUT),bench-results) \
	  --rounds $(or $(BENCH_ROUNDS),3) $(if $(BENCH_ONLY),--only $(BENCH_ONLY)) $(if $(BENCH_QUICK),--quick)
# Rewrites every C file to .clang-format (scripts/check-format.sh --fix).
format:
	./scripts/check-format.sh --fix
install: all
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))
.PHONY: all deps run test soak asan tsan faults fuzz bench format install
