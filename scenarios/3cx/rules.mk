# Build rules shared by scenarios/3cx/Makefile (x64) and scenarios/3cx-x86/Makefile (i686).
#
# The including Makefile sets:
#   ARCH   x64 | x86
#   SCEN   absolute path of the scenario folder (scenarios/3cx or scenarios/3cx-x86)
# Optional on the command line:
#   OUT=dir        write build/, samples/, data and SHA256SUMS under dir instead of SCEN
#                  (used by `make check`)
#   PLACEHOLDER=1  embed the test-only placeholder DLL instead of the real samcli.dll
# Set by `chainreplay variant` (scenarios/3cx/variant.toml); empty by default, so a default
# build is byte-identical to the committed samples:
#   VARIANT_DEFS     extra -D flags for the C sources (ffmpeg.c, samcli.c)
#   VARIANT_LIBS     extra libraries for samcli.dll (-lwinhttp)
#   CARRIER_ARGS     extra arguments of `build.py carrier` (--rc4-key, --marker)
#   MAKE_DATA_ARGS   extra arguments of make_data.py (--icon-key, --c2-domains)
#
# Variables offered to the fragments src/samcli/samcli.mk and src/iconic/iconic.mk:
#   CC, ARCH, TRIPLE, BUILD, OUT, SRC, TOOLS, PYTHON, CFLAGS_REPRO, LDFLAGS_REPRO
# The fragments define the rules for $(BUILD)/samcli.dll and $(BUILD)/iconic.dll, may add
# the data files they produce (under $(OUT)/github, $(OUT)/c2, $(OUT)/files) to DATA_FILES
# and extra files to delete to CLEAN_FILES.

THREECX  := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
SRC      := $(THREECX)/src
TOOLS    := $(THREECX)/tools
OUT      ?= $(SCEN)
BUILD    := $(OUT)/build
SAMPLES  := $(OUT)/samples
PYTHON   ?= python3
REPO     := $(abspath $(THREECX)/../..)

ifeq ($(ARCH),x64)
  TRIPLE    := x86_64-w64-mingw32
  DLL_ENTRY := DllMain
  SC_ENTRY  := sc_entry
  FFMPEG_BASE := 0x180000000
  KILL_AT   :=
else ifeq ($(ARCH),x86)
  TRIPLE    := i686-w64-mingw32
  DLL_ENTRY := _DllMain@12
  SC_ENTRY  := _sc_entry
  FFMPEG_BASE := 0x10000000
  KILL_AT   := -Wl,--kill-at
else
  $(error ARCH must be x64 or x86)
endif

CC      := $(TRIPLE)-gcc
OBJCOPY := $(TRIPLE)-objcopy

# Reproducibility: no timestamps, no build id, no host paths, stripped, and no automatic
# image base (GNU ld derives it from a hash of the output path, so a build in another
# folder, e.g. `make check`, would differ).
CFLAGS_REPRO  := -ffile-prefix-map=$(REPO)/= -fno-ident -fno-asynchronous-unwind-tables
LDFLAGS_REPRO := -s -Wl,--no-insert-timestamp -Wl,--build-id=none -Wl,--disable-auto-image-base

CFLAGS_NOCRT := -Os -Wall -Wextra -ffreestanding -fno-stack-protector -mno-stack-arg-probe \
                -fno-tree-loop-distribute-patterns $(CFLAGS_REPRO)
LDFLAGS_DLL  := -shared -nostdlib $(LDFLAGS_REPRO) -Wl,--entry=$(DLL_ENTRY) $(KILL_AT)
# Stage 2 must be position independent: no jump tables, no SSE constants, no globals.
CFLAGS_SC    := $(CFLAGS_NOCRT) -fno-jump-tables -mgeneral-regs-only -fno-builtin
LDFLAGS_SC   := -nostdlib $(LDFLAGS_REPRO) -Wl,--entry=$(SC_ENTRY) -Wl,--enable-reloc-section

STAGE1   := $(SAMPLES)/ffmpeg.dll
CARRIER  := $(SAMPLES)/d3dcompiler_47.dll
SAMPLE_FILES := $(STAGE1) $(CARRIER)
DATA_FILES   :=
CLEAN_FILES  :=

.PHONY: all samples data sums clean check
.DELETE_ON_ERROR:

all: samples data
	$(PYTHON) $(TOOLS)/build.py sums --root $(OUT)

samples: $(SAMPLE_FILES)

# Fragments written by the stage-2 DLL / stage-3 owner (optional until they exist).
# They write the data files under $(CR3CX_SCENARIO) and define the target `data`.
CR3CX_SCENARIO := $(OUT)
-include $(SRC)/samcli/samcli.mk
-include $(SRC)/iconic/iconic.mk

data: $(DATA_FILES)

# The fragments' link flags (if they use CR3CX_LDFLAGS) get the same output-path independence.
CR3CX_LDFLAGS += -Wl,--disable-auto-image-base

ifeq ($(PLACEHOLDER),1)
EMBED_DLL := $(BUILD)/placeholder_samcli.dll
else
EMBED_DLL := $(BUILD)/samcli.dll
endif

$(BUILD) $(SAMPLES):
	mkdir -p $@

# Stage 1: ffmpeg.dll (no CRT, kernel32 only).
$(STAGE1): $(SRC)/loader/ffmpeg.c $(THREECX)/rules.mk | $(BUILD) $(SAMPLES)
	$(CC) $(CFLAGS_NOCRT) $(VARIANT_DEFS) $(LDFLAGS_DLL) -Wl,--image-base=$(FFMPEG_BASE) -o $(BUILD)/ffmpeg.dll $< -lkernel32
	cp $(BUILD)/ffmpeg.dll $@

# Carrier image (before the payload is appended).
$(BUILD)/d3dcompiler_47.dll: $(SRC)/carrier/d3dcompiler.c $(THREECX)/rules.mk | $(BUILD)
	$(CC) $(CFLAGS_NOCRT) $(LDFLAGS_DLL) -o $@ $<

# Stage 2: bootstrap + freestanding loader, linked, .text extracted.
$(BUILD)/stage2_loader.exe: $(SRC)/stage2/entry_$(ARCH).S $(SRC)/stage2/loader.c $(THREECX)/rules.mk | $(BUILD)
	$(CC) $(CFLAGS_SC) $(LDFLAGS_SC) -o $@ $(SRC)/stage2/entry_$(ARCH).S $(SRC)/stage2/loader.c

$(BUILD)/stage2_code.bin: $(BUILD)/stage2_loader.exe
	$(OBJCOPY) -O binary -j .text $< $@

$(BUILD)/stage2.bin: $(BUILD)/stage2_code.bin $(BUILD)/stage2_loader.exe $(EMBED_DLL) $(TOOLS)/build.py
	$(PYTHON) $(TOOLS)/build.py stage2 --code $< --linked $(BUILD)/stage2_loader.exe \
	    --dll $(EMBED_DLL) --out $@

$(CARRIER): $(BUILD)/d3dcompiler_47.dll $(BUILD)/stage2.bin $(TOOLS)/build.py | $(SAMPLES)
	$(PYTHON) $(TOOLS)/build.py carrier --dll $< --payload $(BUILD)/stage2.bin --out $@ $(CARRIER_ARGS)

# Test-only stand-in for samcli.dll (make PLACEHOLDER=1); never embedded otherwise.
$(BUILD)/placeholder_samcli.dll: $(SRC)/stage2/placeholder_samcli.c $(THREECX)/rules.mk | $(BUILD)
	$(CC) $(CFLAGS_NOCRT) $(LDFLAGS_DLL) -o $@ $< -lkernel32

clean:
	rm -rf $(BUILD) $(SAMPLE_FILES) $(OUT)/SHA256SUMS $(CLEAN_FILES)

# Rebuild everything from scratch in a temporary folder and compare with SHA256SUMS.
check:
	@tmp=$$(mktemp -d) && \
	$(MAKE) --no-print-directory -C $(SCEN) OUT=$$tmp all >/dev/null && \
	if diff -u $(SCEN)/SHA256SUMS $$tmp/SHA256SUMS; then \
	    echo "check: rebuild matches $(SCEN)/SHA256SUMS"; rm -rf $$tmp; \
	else \
	    echo "check: MISMATCH (rebuild kept in $$tmp)"; exit 1; fi
