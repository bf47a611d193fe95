#include "lease_keeper.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace sagaflow::engine {

LeaseKeeper::LeaseKeeper(StateStore& store, const Clock& clock, std::string owner,
                         Duration lease_ttl, Duration poll_every, std::function<void()> poll)
    : store_(store),
      clock_(clock),
      owner_(std::move(owner)),
      lease_ttl_(lease_ttl),
      poll_every_(poll_every),
      poll_(std::move(poll)) {}

LeaseKeeper::~LeaseKeeper() { Stop(); }

void LeaseKeeper::Start() {
  thread_ = std::jthread([this](std::stop_token stop) { Loop(stop); });
}

void LeaseKeeper::Stop() noexcept {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }
  thread_.join();
}

void LeaseKeeper::ClaimDueSoon() {
  {
    std::lock_guard lock(mu_);
    if (poll_soon_) return;
    poll_soon_ = true;
  }
  cv_.notify_all();
}

Result<std::size_t> LeaseKeeper::RenewOnce() {
  const TimePoint now = clock_.Now();
  return store_.RenewLeases(owner_, now, now + lease_ttl_ * 2 / 3, now + lease_ttl_);
}

namespace {
Duration RenewEvery(Duration lease_ttl) {
  return std::max<Duration>(lease_ttl / 6, std::chrono::milliseconds(10));
}
}  // namespace

Result<std::size_t> LeaseKeeper::RenewIfDue() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_renew_) return std::size_t{0};
  next_renew_ = now + RenewEvery(lease_ttl_);
  return RenewOnce();
}

void LeaseKeeper::Loop(std::stop_token stop) {
  const Duration renew_every = RenewEvery(lease_ttl_);
  const Duration tick =
      poll_every_ > Duration::zero() ? std::min(renew_every, poll_every_) : renew_every;
  // Passes are timed in real time (the store's times come from clock_, which may be virtual).
  using Steady = std::chrono::steady_clock;
  next_renew_ = Steady::now() + renew_every;
  Steady::time_point next_poll = Steady::now() + poll_every_;
  while (!stop.stop_requested()) {
    bool soon;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, tick, [&] { return stop.stop_requested() || poll_soon_; });
      soon = std::exchange(poll_soon_, false);
    }
    if (stop.stop_requested()) return;
    if (auto renewed = RenewIfDue(); !renewed.ok()) {
      spdlog::warn("could not renew the leases of owner {}: {}", owner_,
                   renewed.status().ToString());
    }
    const Steady::time_point now = Steady::now();
    if (poll_every_ > Duration::zero() && (soon || now >= next_poll)) {
      next_poll = now + poll_every_;
      poll_();
    }
  }
}

}  // namespace sagaflow::engine
