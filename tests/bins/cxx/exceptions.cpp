/* C++ exceptions as a mingw-w64 g++ program has them: x64 (SEH tables: RaiseException with
 * GCC's code, the personality called by the dispatcher, RtlUnwindEx to the landing pads and the
 * catch, RtlCaptureContext / _Unwind_Resume between them) and x86 (DWARF-2 tables walked by
 * libgcc itself). Throw and catch across frames, by type and by base class, rethrow, catch(...),
 * an exception through a callback (std::function, a function pointer), destructors run while
 * unwinding, nested try, std::exception_ptr, a std:: exception from the library (vector::at),
 * noexcept functions that catch inside. One verdict line a check. Inert without the marker. */
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "probe.h"

static int destroyed;
static std::vector<int> order;

struct Guard {
    int id;
    explicit Guard(int i) : id(i) {}
    ~Guard() { destroyed++; order.push_back(id); }
};

struct Base : std::runtime_error {
    int code;
    Base(const char *what, int c) : std::runtime_error(what), code(c) {}
};
struct Derived : Base {
    Derived() : Base("derived", 42) {}
};

__attribute__((noinline)) static void deep(int depth, int what)
{
    Guard g(depth);
    if (depth == 0) {
        if (what == 0) throw 7;
        if (what == 1) throw Derived();
        if (what == 2) throw std::string("text");
        throw 3.5;
    }
    deep(depth - 1, what);
    order.push_back(-1); /* never reached */
}

static bool throw_int_across_frames()
{
    destroyed = 0;
    order.clear();
    try {
        deep(4, 0);
    } catch (int v) {
        return v == 7 && destroyed == 5 && order.size() == 5 && order[0] == 0 && order[4] == 4;
    }
    return false;
}

static bool catch_by_base()
{
    try {
        deep(2, 1);
    } catch (const std::exception &e) {
        const Base *b = dynamic_cast<const Base *>(&e);
        return b && b->code == 42 && std::string(e.what()) == "derived";
    }
    return false;
}

static bool catch_order()
{
    int got = 0;
    try {
        deep(1, 2);
    } catch (int) {
        got = 1;
    } catch (const std::string &s) {
        got = s == "text" ? 2 : 3;
    }
    return got == 2;
}

static bool catch_all()
{
    try {
        deep(1, 3);
    } catch (...) {
        return true;
    }
    return false;
}

__attribute__((noinline)) static void rethrower()
{
    Guard g(100);
    try {
        deep(1, 0);
    } catch (int &v) {
        v += 1;
        throw;
    }
}

static bool rethrow()
{
    destroyed = 0;
    try {
        rethrower();
    } catch (int v) {
        return v == 8 && destroyed == 3;
    }
    return false;
}

static bool through_callback()
{
    std::function<void(int)> cb = [](int x) {
        Guard g(x);
        if (x > 2) throw std::out_of_range("cb");
    };
    destroyed = 0;
    try {
        for (int i = 0; i < 5; i++) cb(i);
    } catch (const std::out_of_range &e) {
        return destroyed == 4 && std::strcmp(e.what(), "cb") == 0;
    }
    return false;
}

static void fp_thrower(void *p) { throw static_cast<int *>(p); }

static bool through_function_pointer()
{
    void (*volatile fp)(void *) = fp_thrower;
    int target = 5;
    try {
        fp(&target);
    } catch (int *p) {
        return p == &target && *p == 5;
    }
    return false;
}

static bool nested_try()
{
    int steps = 0;
    try {
        try {
            throw std::logic_error("inner");
        } catch (const std::logic_error &) {
            steps++;
            throw std::runtime_error("outer");
        }
    } catch (const std::runtime_error &e) {
        steps += std::strcmp(e.what(), "outer") == 0 ? 10 : 100;
    }
    return steps == 11;
}

static bool exception_ptr()
{
    std::exception_ptr saved;
    try {
        throw std::invalid_argument("kept");
    } catch (...) {
        saved = std::current_exception();
    }
    try {
        std::rethrow_exception(saved);
    } catch (const std::invalid_argument &e) {
        return std::strcmp(e.what(), "kept") == 0;
    }
    return false;
}

static bool library_throws()
{
    std::vector<int> v(3);
    try {
        (void)v.at(10);
    } catch (const std::out_of_range &) {
        return true;
    }
    return false;
}

static bool noexcept_inner() noexcept
{
    try {
        throw 1;
    } catch (int) {
        return true;
    }
}

static bool many_throws()
{
    int caught = 0;
    for (int i = 0; i < 50; i++) {
        try {
            deep(i % 4, 0);
        } catch (int) {
            caught++;
        }
    }
    return caught == 50;
}

int main()
{
    if (!marker_present())
        return 0;
    verdict("throw_int_across_frames", throw_int_across_frames());
    verdict("catch_by_base", catch_by_base());
    verdict("catch_order", catch_order());
    verdict("catch_all", catch_all());
    verdict("rethrow", rethrow());
    verdict("through_callback", through_callback());
    verdict("through_function_pointer", through_function_pointer());
    verdict("nested_try", nested_try());
    verdict("exception_ptr", exception_ptr());
    verdict("library_throws", library_throws());
    verdict("noexcept_inner", noexcept_inner());
    verdict("many_throws", many_throws());
    verdict("done", true);
    return 0;
}
