#include "sagaflow/common/ids.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>

namespace sagaflow {
namespace {

// splitmix64: a fast generator seeded once per thread from the OS.
class ThreadRandom {
 public:
  ThreadRandom() {
    std::random_device rd;
    state_ =
        (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  std::uint64_t Next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
};

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

std::atomic<std::size_t> next_lane{0};

std::string Ulid() {
  thread_local ThreadRandom random;
  thread_local const std::size_t lane = next_lane.fetch_add(1) % kIdLanes;
  auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
  std::uint64_t hi = random.Next();
  std::uint64_t lo = random.Next();
  std::string out(26, '0');
  // 10 characters of time (50 bits, top 2 always zero), 16 characters of randomness (80 bits).
  for (int i = 9; i >= 0; --i) {
    out[i] = kAlphabet[ms & 31];
    ms >>= 5;
  }
  for (int i = 25; i >= 10; --i) {
    out[i] = kAlphabet[lo & 31];
    lo = (lo >> 5) | ((hi & 31) << 59);
    hi >>= 5;
  }
  out[25] = kAlphabet[lane];  // the thread's lane (see InstanceIdLane)
  return out;
}

}  // namespace

InstanceId NewInstanceId() { return InstanceId(Ulid()); }

std::size_t InstanceIdLane(const InstanceId& id) {
  const std::string& s = id.str();
  if (s.size() == 26) {
    const char* at = std::strchr(kAlphabet, s[25]);
    if (at != nullptr && *at != '\0') return static_cast<std::size_t>(at - kAlphabet);
  }
  return std::hash<std::string>{}(s) % kIdLanes;
}
std::string NewUniqueToken() { return Ulid(); }

}  // namespace sagaflow
