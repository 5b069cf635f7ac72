/* The C runtime's streams as a mingw-w64 program with its ordinary start-up uses them: printf to
 * stdout and stderr (x64: through msvcrt!__iob_func, x86: msvcrt!_iob), a file written with
 * fwrite / fputs / fprintf / vfprintf / fputc and read back with fgets / fgetc / feof / rewind.
 * Built with the full mingw CRT (not -nostdlib), as third-party programs are. Exit code
 * 0x1000 + one bit per check; inert without CHAINREPLAY_SANDBOX. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <windows.h>

#define DROP "C:\\Users\\Public\\stdio-drop.txt"

static int vlog(FILE *f, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vfprintf(f, fmt, ap);
    va_end(ap);
    return n;
}

int main(void)
{
    char marker[32], line[64];
    FILE *f;
    int ok = 0;
    if (GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", marker, sizeof marker) != 11 ||
        strcmp(marker, "replay-only") != 0)
        return 0;
    fprintf(stdout, "to stdout %d\n", 1);
    fprintf(stderr, "to stderr %d\n", 2);
    fputs("fputs to stdout\n", stdout);
    fflush(stdout);
    ok |= (_fileno(stdin) == 0 && _fileno(stdout) == 1 && _fileno(stderr) == 2) << 0;
    f = fopen(DROP, "wb");
    if (!f)
        return 0x1000;
    ok |= 1 << 1;
    ok |= (fwrite("ABCDEF", 1, 6, f) == 6) << 2;
    fputs("line two\n", f);
    fprintf(f, "n=%d\n", 42);
    vlog(f, "v=%s\n", "x");
    fputc('Z', f);
    fclose(f);
    f = fopen(DROP, "rb");
    if (!f)
        return 0x1000 + ok;
    ok |= (fgets(line, sizeof line, f) != NULL && strcmp(line, "ABCDEFline two\n") == 0) << 3;
    ok |= (fgets(line, sizeof line, f) != NULL && strcmp(line, "n=42\n") == 0) << 4;
    ok |= (fgets(line, sizeof line, f) != NULL && strcmp(line, "v=x\n") == 0) << 5;
    ok |= (fgetc(f) == 'Z' && fgetc(f) == EOF && feof(f)) << 6;
    rewind(f);
    ok |= (fgetc(f) == 'A' && _fileno(f) > 2) << 7;
    fclose(f);
    return 0x1000 + ok;
}
