/* The C runtime functions a third-party mingw-w64 program calls beyond stdio, built with the
 * full mingw CRT (its start-up: _initterm, __getmainargs): numbers and tokens (strtol, strtoul,
 * strtod / atof, strtok per thread, mbstowcs, strerror), the locale (setlocale, localeconv, MB_CUR_MAX,
 * ___lc_codepage_func), the calendar (localtime / gmtime / mktime / strftime on the guest's
 * clock), the file system (_access, _stat, _mkdir, _rmdir, rename, remove, _getcwd, _chdir,
 * ungetc), qsort / bsearch calling a comparison function, setjmp / longjmp. One verdict line a
 * check ("check NAME: pass|fail", OutputDebugStringA); with CRT_ABORT set it calls abort().
 * Inert without CHAINREPLAY_SANDBOX. */
#include <direct.h>
#include <errno.h>
#include <io.h>
#include <limits.h>
#include <locale.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <windows.h>

#define DIR_PATH "C:\\Users\\Public\\crt-dir"
#define FILE_A DIR_PATH "\\a.txt"
#define FILE_B DIR_PATH "\\b.txt"

static void verdict(const char *name, int ok)
{
    char line[128];
    snprintf(line, sizeof line, "check %s: %s", name, ok ? "pass" : "fail");
    OutputDebugStringA(line);
}

static int by_value(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static jmp_buf jump;
static volatile int jumps;

static __attribute__((noinline)) void leap(int value)
{
    jumps++;
    longjmp(jump, value);
}

static char thread_text[] = "x y";
static char *thread_first, *thread_second;

static DWORD WINAPI tokenizer(LPVOID unused)
{
    (void)unused;
    thread_first = strtok(thread_text, " ");
    thread_second = strtok(NULL, " ");
    return 0;
}

static void numbers(void)
{
    char *end = NULL;
    const char *none = "xyz";
    long v = strtol("  0x1fZ", &end, 0);
    verdict("strtol_hex_endptr", v == 31 && end && *end == 'Z');
    verdict("strtol_octal", strtol("017", NULL, 0) == 15 && strtol("-42", NULL, 10) == -42);
    verdict("strtol_overflow", strtol("99999999999", NULL, 10) == LONG_MAX && strtol("-99999999999", NULL, 10) == LONG_MIN);
    v = strtol(none, &end, 10);
    verdict("strtol_no_digits", v == 0 && end == none);
    verdict("strtoul", strtoul("ff", NULL, 16) == 255 && strtoul("-1", NULL, 10) == ULONG_MAX &&
                           strtoul("0X10", NULL, 0) == 16);
}

static void floats(void)
{
    char *end = NULL;
    const char *none = "x1";
    double sum = 0, d = strtod("  -2.5e1xyz", &end);
    int i;
    verdict("strtod", d == -25.0 && end && *end == 'x' && strtod(none, &end) == 0.0 && end == none);
    for (i = 0; i < 10; i++) /* the x87 stack stays balanced (x86 returns in st(0)) */
        sum += atof("1.5");
    verdict("atof", sum == 15.0 && atof("1e999") > 1e308);
}

static void tokens(void)
{
    char text[] = "a,,b;c";
    char *a = strtok(text, ",;");
    HANDLE thread;
    char *b, *c, *d;
    /* another thread's strtok keeps its own position */
    thread = CreateThread(NULL, 0, tokenizer, NULL, 0, NULL);
    WaitForSingleObject(thread, INFINITE);
    CloseHandle(thread);
    b = strtok(NULL, ",;");
    c = strtok(NULL, ",;");
    d = strtok(NULL, ",;");
    verdict("strtok", a && b && c && !d && !strcmp(a, "a") && !strcmp(b, "b") && !strcmp(c, "c"));
    verdict("strtok_per_thread", thread_first && thread_second && !strcmp(thread_first, "x") &&
                                     !strcmp(thread_second, "y"));
}

static void text(void)
{
    wchar_t wide[16];
    verdict("mbstowcs", mbstowcs(wide, "h\xe9y", 16) == 3 && wide[0] == L'h' && wide[1] == 0xE9 && wide[3] == 0 &&
                            mbstowcs(NULL, "abcd", 0) == 4);
    verdict("strerror", !strcmp(strerror(ENOENT), "No such file or directory") &&
                            !strcmp(strerror(999), "Unknown error"));
}

static void locale(void)
{
    struct lconv *conv;
    const char *name = setlocale(LC_ALL, NULL);
    unsigned int c_page = ___lc_codepage_func();
    verdict("setlocale_c", name && !strcmp(name, "C") && c_page == 0);
    conv = localeconv();
    verdict("localeconv_c", conv && !strcmp(conv->decimal_point, ".") && !strcmp(conv->thousands_sep, "") &&
                                conv->frac_digits == CHAR_MAX);
    name = setlocale(LC_ALL, "");
    verdict("setlocale_user", name && !strcmp(name, "English_United States.1252") && ___lc_codepage_func() == 1252);
    conv = localeconv();
    verdict("localeconv_user", conv && !strcmp(conv->thousands_sep, ",") && !strcmp(conv->currency_symbol, "$"));
    verdict("setlocale_unknown", setlocale(LC_ALL, "Klingon_Qo'noS.1") == NULL && setlocale(99, "C") == NULL);
    name = setlocale(LC_NUMERIC, "C");
    name = setlocale(LC_ALL, NULL);
    verdict("setlocale_mixed", name && strstr(name, "LC_NUMERIC=C;") && strstr(name, "LC_CTYPE=English_United States.1252"));
    setlocale(LC_ALL, "C");
    verdict("mb_cur_max", MB_CUR_MAX == 1);
}

static void calendar(void)
{
    time_t now = time(NULL), epoch = 0, fixed = 1709294400; /* 2024-03-01 12:00:00 UTC */
    struct tm *tm = localtime(&now), made;
    SYSTEMTIME st;
    char out[64];
    GetLocalTime(&st);
    verdict("localtime_guest_clock", tm && tm->tm_year + 1900 == st.wYear && tm->tm_mon + 1 == st.wMonth &&
                                         tm->tm_mday == st.wDay && tm->tm_hour == st.wHour && tm->tm_isdst == 0);
    tm = gmtime(&epoch);
    verdict("gmtime_epoch", tm && tm->tm_year == 70 && tm->tm_mon == 0 && tm->tm_mday == 1 && tm->tm_wday == 4 &&
                                tm->tm_yday == 0);
    memset(&made, 0, sizeof made);
    made.tm_year = 124;
    made.tm_mon = 1;
    made.tm_mday = 30; /* February 30th: March 1st */
    made.tm_hour = 12;
    verdict("mktime_normalizes", mktime(&made) == fixed && made.tm_mon == 2 && made.tm_mday == 1 && made.tm_wday == 5);
    tm = gmtime(&fixed);
    verdict("strftime", tm && strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S %a %b %j %#d", tm) == 33 &&
                            !strcmp(out, "2024-03-01 12:00:00 Fri Mar 061 1"));
    verdict("strftime_too_small", tm && strftime(out, 5, "%Y-%m", tm) == 0);
    _tzset();
    verdict("time_zone", _timezone == 0 && _daylight == 0 && _tzname[0] != NULL);
}

static void files(void)
{
    struct stat st;
    char cwd[MAX_PATH], *fresh;
    FILE *f;
    int c;
    verdict("mkdir", _mkdir(DIR_PATH) == 0 && _mkdir(DIR_PATH) == -1 && _mkdir("C:\\no-such\\dir") == -1);
    f = fopen(FILE_A, "wb");
    if (f) {
        fwrite("hello", 1, 5, f);
        fclose(f);
    }
    verdict("access", _access(FILE_A, 0) == 0 && _access("C:\\Windows", 0) == 0 && _access(FILE_B, 0) == -1);
    verdict("stat_file", stat(FILE_A, &st) == 0 && st.st_size == 5 && (st.st_mode & S_IFMT) == S_IFREG);
    verdict("stat_folder", stat("C:\\Windows", &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR && stat(FILE_B, &st) == -1);
    f = fopen(FILE_A, "rb");
    c = f ? fgetc(f) : -2;
    verdict("ungetc", f && c == 'h' && ungetc(c, f) == 'h' && fgetc(f) == 'h' && ungetc('Q', f) == 'Q' &&
                          fgetc(f) == 'Q' && fgetc(f) == 'e');
    if (f)
        fclose(f);
    verdict("rmdir_not_empty", _rmdir(DIR_PATH) == -1);
    verdict("rename", rename(FILE_A, FILE_B) == 0 && _access(FILE_A, 0) == -1 && _access(FILE_B, 0) == 0 &&
                          rename(FILE_A, FILE_B) == -1);
    verdict("remove", remove(FILE_B) == 0 && remove(FILE_B) == -1 && _access(FILE_B, 0) == -1);
    verdict("rmdir", _rmdir(DIR_PATH) == 0 && _access(DIR_PATH, 0) == -1 && _rmdir(DIR_PATH) == -1);
    verdict("chdir_getcwd", _chdir("C:\\Users\\Public") == 0 && _getcwd(cwd, sizeof cwd) == cwd &&
                                !strcmp(cwd, "C:\\Users\\Public") && _getcwd(cwd, 3) == NULL &&
                                _chdir("C:\\no-such") == -1);
    fresh = _getcwd(NULL, 0);
    verdict("getcwd_allocates", fresh && !strcmp(fresh, "C:\\Users\\Public"));
    free(fresh);
}

static void searching(void)
{
    int values[40], i, sorted = 1, key = 77, missing = 1000;
    const char *names[] = {"pear", "apple", "fig", "kiwi"};
    int *found;
    for (i = 0; i < 40; i++)
        values[i] = (i * 37 + 11) % 101;
    qsort(values, 40, sizeof values[0], by_value);
    for (i = 1; i < 40; i++)
        sorted &= values[i - 1] <= values[i];
    verdict("qsort", sorted && values[0] == 0);
    qsort(names, 4, sizeof names[0], by_name);
    verdict("qsort_strings", !strcmp(names[0], "apple") && !strcmp(names[3], "pear"));
    key = values[17];
    found = bsearch(&key, values, 40, sizeof values[0], by_value);
    verdict("bsearch", found && *found == key && bsearch(&missing, values, 40, sizeof values[0], by_value) == NULL);
}

static void jumping(void)
{
    volatile int rounds = 0;
    int got = setjmp(jump);
    rounds++;
    if (got == 0)
        leap(0);     /* longjmp(.., 0) makes setjmp return 1 */
    else if (got == 1)
        leap(9);
    verdict("setjmp_longjmp", got == 9 && rounds == 3 && jumps == 2);
}

int main(int argc, char **argv)
{
    char marker[32];
    if (GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", marker, sizeof marker) != 11 ||
        strcmp(marker, "replay-only") != 0)
        return 0;
    verdict("main_args", argc >= 1 && argv[0] && strstr(argv[0], "crt") != NULL);
    if (getenv("CRT_ABORT")) {
        OutputDebugStringA("aborting");
        abort();
    }
    numbers();
    floats();
    tokens();
    text();
    locale();
    calendar();
    files();
    searching();
    jumping();
    return 0;
}
