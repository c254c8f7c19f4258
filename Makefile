# The one-command wrapper: make run, make test, make asan, make fuzz.
BUILD ?= build
CMAKE_ARGS ?=

all: deps
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_ARGS) >/dev/null && cmake --build $(BUILD)
deps:
	@./scripts/install-deps.sh
run: all
	$(BUILD)/tools/nxl-bench/nxl-bench --backend SHM --op_type READ,WRITE
test: all
	./tests/run_all.sh $(BUILD)
asan:
	$(MAKE) BUILD=build-asan CMAKE_ARGS="-DNXL_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug" test
faults:
	$(MAKE) BUILD=build-asan CMAKE_ARGS="-DNXL_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug" all
	./tests/faults.sh build-asan $(or $(NXL_FAULT),all=0.01)
fuzz: deps
	./fuzz/run.sh build-fuzz $(FUZZ_SECONDS)
install: all
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))
.PHONY: all deps run test asan faults fuzz install
