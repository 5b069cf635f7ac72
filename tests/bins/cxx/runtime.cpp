/* The C++ runtime a mingw-w64 g++ program (posix thread model: winpthreads, linked statically)
 * meets beyond exceptions: static constructors and destructors (run by exit()), function-local statics,
 * thread_local (emutls), std::thread + join, std::mutex / std::condition_variable between two
 * threads, std::async / std::future, std::chrono's clocks and sleep_for, std::random_device,
 * std::string / std::vector / std::map under heavy use (heap growth and reallocation),
 * std::ostringstream, an std::ofstream file read back with std::ifstream, std::filesystem,
 * std::shared_ptr / std::unique_ptr, virtual calls and dynamic_cast, std::sort with a lambda.
 * One verdict line a check. Inert without the marker. */
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "probe.h"

static int constructed_before_main;

struct StaticInit {
    int value;
    StaticInit() : value(1234) { constructed_before_main = 1; }
    ~StaticInit() { verdict("static_destructor", value == 1234); } /* exit() runs it */
};
static StaticInit static_object;

static int &counter()
{
    static int value = 40; /* a function-local static (guarded) */
    return ++value;
}

static thread_local int per_thread = 5;

struct Shape {
    virtual ~Shape() = default;
    virtual int area() const = 0;
};
struct Square : Shape {
    int side;
    explicit Square(int s) : side(s) {}
    int area() const override { return side * side; }
};
struct Rect : Shape {
    int w, h;
    Rect(int a, int b) : w(a), h(b) {}
    int area() const override { return w * h; }
};

static bool threads_and_thread_local()
{
    per_thread = 9;
    int seen_in_thread = -1;
    std::thread t([&] {
        seen_in_thread = per_thread; /* a fresh copy: 5 */
        per_thread = 77;
    });
    t.join();
    return seen_in_thread == 5 && per_thread == 9;
}

static bool several_threads()
{
    std::atomic<int> sum{0};
    std::vector<std::thread> pool;
    for (int i = 1; i <= 4; i++)
        pool.emplace_back([&sum, i] { sum += i * 10; });
    for (auto &t : pool)
        t.join();
    return sum == 100;
}

static bool mutex_condition_variable()
{
    std::mutex m;
    std::condition_variable cv;
    bool ready = false;
    int produced = 0;
    std::thread producer([&] {
        std::lock_guard<std::mutex> lock(m);
        produced = 42;
        ready = true;
        cv.notify_one();
    });
    {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return ready; });
    }
    producer.join();
    return produced == 42;
}

static bool async_future()
{
    std::future<int> f = std::async(std::launch::async, [] { return 6 * 7; });
    return f.get() == 42;
}

static bool chrono_clocks()
{
    auto s0 = std::chrono::steady_clock::now();
    auto w0 = std::chrono::system_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto s1 = std::chrono::steady_clock::now();
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(s1 - s0).count();
    auto year = std::chrono::duration_cast<std::chrono::hours>(w0.time_since_epoch()).count() / (24 * 365);
    return elapsed >= 40 && elapsed < 5000 && year > 45 && year < 100; /* after 2015 */
}

static bool random_device()
{
    std::random_device rd;
    unsigned a = rd(), b = rd(), c = rd();
    std::mt19937 gen(a);
    std::uniform_int_distribution<int> dist(1, 6);
    int roll = dist(gen);
    return !(a == b && b == c) && roll >= 1 && roll <= 6;
}

static bool strings_and_vectors()
{
    std::string text;
    for (int i = 0; i < 2000; i++)
        text += std::to_string(i % 10);
    std::vector<std::string> parts;
    for (int i = 0; i < 500; i++)
        parts.push_back(text.substr(i, 100));
    std::vector<int> numbers;
    for (int i = 0; i < 100000; i++)
        numbers.push_back(i);
    std::map<std::string, int> table;
    for (int i = 0; i < 300; i++)
        table["key" + std::to_string(i)] = i;
    long long sum = 0;
    for (int n : numbers)
        sum += n;
    return text.size() == 2000 && parts[499].size() == 100 && parts[3][0] == '3' && sum == 4999950000LL &&
           table["key299"] == 299 && table.size() == 300;
}

static bool string_stream()
{
    std::ostringstream out;
    out << "pi=" << 3.25 << " n=" << 42 << ' ' << std::hex << 255;
    std::istringstream in("10 20 30");
    int a, b, c;
    in >> a >> b >> c;
    return out.str() == "pi=3.25 n=42 ff" && a + b + c == 60;
}

static const char *const FILE_PATH = "C:\\Users\\Public\\cxx-runtime.txt";

static bool file_streams()
{
    {
        std::ofstream out(FILE_PATH);
        if (!out)
            return false;
        out << "line one\n" << 12345 << "\n";
    }
    std::ifstream in(FILE_PATH);
    std::string first;
    int number = 0;
    std::getline(in, first);
    in >> number;
    return first == "line one" && number == 12345;
}

static bool filesystem()
{
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path dir = "C:\\Users\\Public\\cxx-fs";
    fs::create_directories(dir, ec);
    if (ec)
        return false;
    {
        std::ofstream(dir / "a.txt") << "abc";
    }
    bool exists = fs::exists(dir / "a.txt", ec);
    auto size = fs::file_size(dir / "a.txt", ec);
    fs::rename(dir / "a.txt", dir / "b.txt", ec);
    bool renamed = !ec && fs::exists(dir / "b.txt") && !fs::exists(dir / "a.txt");
    int entries = 0;
    for (const auto &entry : fs::directory_iterator(dir, ec))
        entries += entry.path().filename() == "b.txt";
    return exists && size == 3 && renamed && entries == 1;
}

static bool smart_pointers_and_virtuals()
{
    std::vector<std::unique_ptr<Shape>> shapes;
    shapes.push_back(std::make_unique<Square>(3));
    shapes.push_back(std::make_unique<Rect>(2, 5));
    int total = 0;
    for (const auto &s : shapes)
        total += s->area();
    auto shared = std::make_shared<Square>(4);
    std::shared_ptr<Shape> base = shared;
    std::weak_ptr<Shape> weak = base;
    bool cast = dynamic_cast<Square *>(base.get()) != nullptr && dynamic_cast<Rect *>(base.get()) == nullptr;
    return total == 19 && shared.use_count() == 2 && !weak.expired() && cast;
}

static bool sort_lambda()
{
    std::vector<int> v{5, 3, 9, 1, 7};
    std::sort(v.begin(), v.end(), [](int a, int b) { return a > b; });
    return v == std::vector<int>{9, 7, 5, 3, 1};
}

int main()
{
    if (!marker_present())
        return 0;
    verdict("static_constructor", constructed_before_main == 1 && static_object.value == 1234);
    verdict("local_static", counter() == 41 && counter() == 42);
    verdict("thread_local", threads_and_thread_local());
    verdict("several_threads", several_threads());
    verdict("mutex_condition_variable", mutex_condition_variable());
    verdict("async_future", async_future());
    verdict("chrono_clocks", chrono_clocks());
    verdict("random_device", random_device());
    verdict("strings_and_vectors", strings_and_vectors());
    verdict("string_stream", string_stream());
    verdict("file_streams", file_streams());
    verdict("filesystem", filesystem());
    verdict("smart_pointers_and_virtuals", smart_pointers_and_virtuals());
    verdict("sort_lambda", sort_lambda());
    verdict("done", true);
    return 0;
}
