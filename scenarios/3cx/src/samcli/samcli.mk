# samcli.mk - builds $(BUILD)/samcli.dll (stage 2 "SUDDENICON"-like DLL).
# Included (-include) by scenarios/3cx/Makefile and scenarios/3cx-x86/Makefile, which set
#   CC    x86_64-w64-mingw32-gcc | i686-w64-mingw32-gcc
#   ARCH  x64 | x86
#   BUILD output directory
SAMCLI_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
SAMCLI_SRC := $(SAMCLI_DIR)/samcli.c

# Shared by samcli.mk and iconic.mk: freestanding, deterministic, no CRT.
CR3CX_CFLAGS := -O2 -s -Wall -Wextra -Wno-unused-parameter -std=gnu11 \
	-ffreestanding -fno-builtin -fno-tree-loop-distribute-patterns -fno-stack-protector \
	-fno-ident -mno-stack-arg-probe \
	-ffile-prefix-map=$(abspath $(SAMCLI_DIR)/../..)=3cx
CR3CX_LDFLAGS := -shared -nostdlib -nostartfiles -Wl,--no-insert-timestamp -Wl,--build-id=none \
	-Wl,--dynamicbase -Wl,--kill-at -Wl,--exclude-all-symbols
ifeq ($(ARCH),x86)
CR3CX_ENTRY := -Wl,-e,_DllMain@12
else
CR3CX_ENTRY := -Wl,-e,DllMain
endif

SAMCLI_LIBS := -lwininet -lbcrypt -ladvapi32 -lkernel32 -lmsvcrt -lgcc

$(BUILD)/samcli.dll: $(SAMCLI_SRC) $(SAMCLI_DIR)/samcli.mk
	@mkdir -p $(BUILD)
	$(CC) $(CR3CX_CFLAGS) -o $@ $(SAMCLI_SRC) $(CR3CX_LDFLAGS) $(CR3CX_ENTRY) $(SAMCLI_LIBS)
