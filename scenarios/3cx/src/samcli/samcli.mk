# samcli.mk - builds $(BUILD)/samcli.dll (stage 2, "SUDDENICON"-like DLL).
# Meant to be -include'd by scenarios/3cx/Makefile and scenarios/3cx-x86/Makefile, which set
#   CC    x86_64-w64-mingw32-gcc | i686-w64-mingw32-gcc
#   ARCH  x64 | x86
#   BUILD output directory
# Does not change the including Makefile's default goal.
CR3CX_SAVED_GOAL := $(.DEFAULT_GOAL)
SAMCLI_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

# Freestanding, deterministic, no CRT (same flags in iconic.mk).
ifndef CR3CX_CFLAGS
CR3CX_CFLAGS := -O2 -s -Wall -Wextra -std=gnu11 \
	-ffreestanding -fno-builtin -fno-tree-loop-distribute-patterns -fno-stack-protector \
	-fno-ident -mno-stack-arg-probe -fno-asynchronous-unwind-tables \
	-ffile-prefix-map=$(abspath $(SAMCLI_DIR)/../..)=3cx
CR3CX_LDFLAGS := -shared -nostdlib -nostartfiles -Wl,--no-insert-timestamp -Wl,--build-id=none \
	-Wl,--dynamicbase -Wl,--disable-auto-image-base -Wl,--kill-at -Wl,--exclude-all-symbols
ifeq ($(ARCH),x86)
CR3CX_LDFLAGS += -Wl,-e,_DllMain@12
else
CR3CX_LDFLAGS += -Wl,-e,DllMain
endif
endif

SAMCLI_LIBS := -lwininet -lbcrypt -ladvapi32 -lkernel32 -lmsvcrt -lgcc

$(BUILD)/samcli.dll: $(SAMCLI_DIR)/samcli.c $(SAMCLI_DIR)/samcli.mk
	@mkdir -p $(@D)
	$(CC) $(CR3CX_CFLAGS) $(VARIANT_DEFS) -o $@ $< $(CR3CX_LDFLAGS) $(VARIANT_LIBS) $(SAMCLI_LIBS)

.DEFAULT_GOAL := $(CR3CX_SAVED_GOAL)
