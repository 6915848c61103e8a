# cairn: one Makefile. Switches on the command line:
#   make                 CPU build: libraries in build/, programs in bin/
#   make CUDA=1          adds nn/cuda (cuDNN + cuBLAS); objects in build/cuda, programs in build/cuda/bin
#   make ASAN=1          AddressSanitizer + UBSan; objects and programs under build/asan
#   make DEBUG=1         -O0
# Targets: all, test, bench, demo, check-cuda, bench-cuda, install, uninstall, format, clean.
#   make install PREFIX=$HOME/.local   (default /usr/local; DESTDIR for packaging)

CC      ?= cc
NVCC    ?= /usr/local/cuda/bin/nvcc
O       := build
BIN     := bin
CFLAGS  := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -g -MMD -MP -I. -pthread
OPT     := -O2 -march=x86-64-v2
LDFLAGS := -pthread -Wl,--as-needed

ifeq ($(DEBUG),1)
OPT     := -O0
endif
ifeq ($(ASAN),1)
O       := build/asan
BIN     := build/asan/bin
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(CUDA),1)
O       := build/cuda
BIN     := build/cuda/bin
CFLAGS  += -DCAIRN_CUDA -I/usr/local/cuda/include
# GPU architectures to build kernels for (compute capability x 10): Ampere
# (A100) and Hopper (H100, H200) by default, plus PTX of the newest for later
# GPUs to compile at load time; e.g. CUDA_ARCH="75 80 90" adds Turing (T4;
# CUDA 13 compiles for 75 and newer), in ascending order.
CUDA_ARCH ?= 80 90
NVFLAGS := -O2 -g -std=c++17 -I. -I/usr/local/cuda/include -DCAIRN_CUDA \
           $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
           -gencode arch=compute_$(lastword $(CUDA_ARCH)),code=compute_$(lastword $(CUDA_ARCH)) \
           -DCAIRN_CUDA_ARCH='"$(CUDA_ARCH)"' -Xcompiler -Wall,-Wextra,-fPIC
CUDA_LIBS := -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcudnn -lcublas -lcudart -lstdc++
endif
CFLAGS += $(OPT)

GDAL_CFLAGS := $(shell gdal-config --cflags 2>/dev/null)
MPI_CFLAGS  := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS    := $(shell mpicc --showme:link 2>/dev/null)
CFLAGS += $(GDAL_CFLAGS) $(MPI_CFLAGS)
# --as-needed keeps a program from depending on a library it does not call:
# the training programs do not need GDAL or libinih, so they run on the GPU machine.
LDLIBS := $(CUDA_LIBS) -lgdal -lcurl -llapacke -lopenblas $(MPI_LIBS) -linih -ljansson -lcrypto -ldeflate -lz -lm

# Libraries, one per folder, listed so that a library comes before what it uses
# (geo/tileset writes nn/dataset shards; nn itself never uses GDAL).
LIBDIRS := nas dist geo nn pipeline jobs core
nas_SRC      := $(wildcard nas/*.c)
dist_SRC     := $(wildcard dist/*.c)
nn_SRC       := $(wildcard nn/*.c nn/cpu/*.c)
geo_SRC      := $(wildcard geo/*.c)
pipeline_SRC := $(filter-out pipeline/main.c,$(wildcard pipeline/*.c))
jobs_SRC     := $(wildcard jobs/*.c)
core_SRC     := $(wildcard core/*.c)
ifeq ($(CUDA),1)
nn_SRC       += $(wildcard nn/cuda/*.c)
nn_CU        := $(wildcard nn/cuda/*.cu)
endif

lib_of = $(O)/lib/lib$(1).a
objs_of = $(patsubst %.c,$(O)/%.o,$($(1)_SRC)) $(patsubst %.cu,$(O)/%.cu.o,$($(1)_CU))
LIBS := $(foreach d,$(LIBDIRS),$(if $(strip $(call objs_of,$(d))),$(call lib_of,$(d))))

STAGES  := $(patsubst stages/%.c,$(BIN)/%,$(wildcard stages/*.c))
PROGS   := $(BIN)/cairn $(STAGES)
UNITS   := $(patsubst tests/unit/%.c,$(O)/t/%,$(wildcard tests/unit/test_*.c))
BENCHES := $(patsubst bench/%.c,$(O)/b/%,$(wildcard bench/*.c))

ALL_OBJS := $(foreach d,$(LIBDIRS),$(call objs_of,$(d))) $(O)/pipeline/main.o \
            $(patsubst %.c,$(O)/%.o,$(wildcard stages/*.c tests/unit/*.c bench/*.c))

.SECONDARY:
.PHONY: all test test-unit bench demo check-cuda bench-cuda install uninstall format clean
all: $(PROGS) $(UNITS)

define lib_rule
$(call lib_of,$(1)): $(call objs_of,$(1))
	@mkdir -p $$(@D)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach d,$(LIBDIRS),$(eval $(call lib_rule,$(d))))

$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(O)/%.cu.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(BIN)/cairn: $(O)/pipeline/main.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BIN)/%: $(O)/stages/%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(O)/t/%: $(O)/tests/unit/%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(O)/b/%: $(O)/bench/%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# make test: every unit test and every integration test, one summary line.
test: all $(O)/b/cuda_step
	@CAIRN_BIN=$(abspath $(BIN)) CAIRN_TESTS=$(abspath $(O)/t) bash tests/run.sh

test-unit: all
	@CAIRN_BIN=$(abspath $(BIN)) CAIRN_TESTS=$(abspath $(O)/t) bash tests/run.sh --unit

bench: all $(BENCHES)
	@CAIRN_BIN=$(abspath $(BIN)) CAIRN_BENCH=$(abspath $(O)/b) bash bench/run.sh

demo: all
	@CAIRN_BIN=$(abspath $(BIN)) bash scripts/demo.sh

check-cuda:
	$(MAKE) CUDA=1 all build/cuda/b/cuda_step
	@CAIRN_BIN=$(abspath build/cuda/bin) CAIRN_TESTS=$(abspath build/cuda/t) bash tests/run.sh --cuda

bench-cuda:
	$(MAKE) CUDA=1 all $(patsubst bench/%.c,build/cuda/b/%,$(wildcard bench/*.c))
	@CAIRN_BIN=$(abspath build/cuda/bin) CAIRN_BENCH=$(abspath build/cuda/b) bash bench/run.sh --cuda

PREFIX ?= /usr/local
install: all
	@bash scripts/install.sh $(BIN) $(DESTDIR)$(PREFIX)

uninstall:
	@bash scripts/install.sh $(BIN) $(DESTDIR)$(PREFIX) --uninstall

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf build bin

-include $(ALL_OBJS:.o=.d) $(foreach d,$(LIBDIRS),$(patsubst %.cu,$(O)/%.cu.d,$($(d)_CU)))
