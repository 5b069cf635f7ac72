# Build rules shared by the generality suite's scenarios (scenarios/<name>/Makefile).
# Deterministic: `make clean all` twice gives byte-identical outputs; `make check` rebuilds into
# a temporary folder and compares with the committed files.
#
# The including Makefile sets ARCH (x64 | x86), SCEN (its folder), OUTPUTS (built files,
# relative to SCEN), optionally SUMS_EXTRA, and the rules that make them from $(BUILD)/payload.bin / layer1.bin.

COMMON := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
REPO   := $(abspath $(COMMON)/../..)
OUT    ?= $(SCEN)
BUILD  := $(OUT)/build
PYTHON ?= python3
TOOL   := $(PYTHON) $(COMMON)/tool.py

ifeq ($(ARCH),x64)
  TRIPLE    := x86_64-w64-mingw32
  EXE_ENTRY := Entry
  DLL_ENTRY := DllMain
  SC_SYM    := sc_main
else ifeq ($(ARCH),x86)
  TRIPLE    := i686-w64-mingw32
  EXE_ENTRY := _Entry
  DLL_ENTRY := _DllMain@12
  SC_SYM    := _sc_main@4
else
  $(error ARCH must be x64 or x86)
endif

CC      := $(TRIPLE)-gcc
OBJCOPY := $(TRIPLE)-objcopy
OBJDUMP := $(TRIPLE)-objdump

CFLAGS := -Os -Wall -Wextra -ffreestanding -fno-builtin -fno-ident -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -mno-stack-arg-probe \
	-fno-tree-loop-distribute-patterns -ffile-prefix-map=$(REPO)/= -I$(COMMON) -I$(BUILD)
LDFLAGS := -nostdlib -s -Wl,--no-insert-timestamp -Wl,--build-id=none -Wl,--disable-auto-image-base
EXE_LDFLAGS := $(LDFLAGS) -Wl,-e,$(EXE_ENTRY)
DLL_LDFLAGS := $(LDFLAGS) -shared -Wl,--entry=$(DLL_ENTRY) -Wl,--kill-at
# Shellcode: one function at offset 0, no data, no relocations, no vector constants.
SCFLAGS := $(CFLAGS) -fno-jump-tables -mgeneral-regs-only -fomit-frame-pointer -fno-tree-vectorize

all: $(addprefix $(OUT)/,$(OUTPUTS)) $(OUT)/SHA256SUMS

$(BUILD):
	mkdir -p $@

$(BUILD)/%.o: $(COMMON)/%.c $(COMMON)/common.h | $(BUILD)
	$(CC) $(SCFLAGS) -c -o $@ $<

# Refuse to flatten an object whose code needs relocations or carries data.
$(BUILD)/%.bin: $(BUILD)/%.o
	@if $(OBJDUMP) -r $< | grep -q 'RELOCATION RECORDS'; then \
		echo "error: $< has relocations; not position independent" >&2; exit 1; fi
	@if $(OBJDUMP) -h $< | awk '$$1 ~ /^[0-9]+$$/ && $$2 != ".text" && $$3 !~ /^0+$$/ {bad=1} END {exit !bad}'; then \
		echo "error: $< has data sections" >&2; exit 1; fi
	@if ! $(OBJDUMP) -t $< | awk '$$NF == "$(SC_SYM)" {found=1} END {exit !found}'; then \
		echo "error: $< has no $(SC_SYM)" >&2; exit 1; fi
	$(OBJCOPY) -O binary -j .text $< $@

# SUMS_EXTRA: committed data files (not built) that the manifest also covers.
$(OUT)/SHA256SUMS: $(addprefix $(OUT)/,$(OUTPUTS)) $(addprefix $(SCEN)/,$(SUMS_EXTRA))
	cd $(OUT) && sha256sum $(OUTPUTS) > SHA256SUMS.tmp
	$(if $(SUMS_EXTRA),cd $(SCEN) && sha256sum $(SUMS_EXTRA) >> $(OUT)/SHA256SUMS.tmp)
	mv $(OUT)/SHA256SUMS.tmp $@

check:
	rm -rf $(SCEN)/build/check && mkdir -p $(SCEN)/build/check
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) OUT=$(SCEN)/build/check all
	cd $(SCEN) && sha256sum -c build/check/SHA256SUMS
	cd $(SCEN)/build/check && sha256sum -c $(SCEN)/SHA256SUMS

clean:
	rm -rf $(BUILD) $(addprefix $(OUT)/,$(OUTPUTS)) $(OUT)/SHA256SUMS

.PHONY: all check clean
.DELETE_ON_ERROR:
