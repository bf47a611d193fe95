#include "timer_service.h"

#include <algorithm>
#include <utility>

namespace sagaflow::engine {

TimerService::TimerService(const Clock& clock, Fire fire) : clock_(clock), fire_(std::move(fire)) {}

TimerService::~TimerService() { Stop(); }

void TimerService::Start() {
  thread_ = std::jthread([this](std::stop_token stop) { Loop(stop); });
}

void TimerService::Stop() noexcept {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }
  thread_.join();
}

void TimerService::Add(TimePoint due, Work work) {
  {
    std::lock_guard lock(mu_);
    timers_.push(Timer{due, seq_++, std::move(work)});
  }
  cv_.notify_all();
}

std::optional<TimePoint> TimerService::ReleaseDue() {
  std::vector<Work> due;
  std::optional<TimePoint> next;
  {
    std::lock_guard lock(mu_);
    const TimePoint now = clock_.Now();
    while (!timers_.empty() && timers_.top().due <= now) {
      due.push_back(std::move(const_cast<Timer&>(timers_.top()).work));
      timers_.pop();
    }
    if (!timers_.empty()) next = timers_.top().due;
  }
  for (Work& w : due) fire_(std::move(w));
  return next;
}

std::optional<TimePoint> TimerService::NextDue() const {
  std::lock_guard lock(mu_);
  if (timers_.empty()) return std::nullopt;
  return timers_.top().due;
}

std::size_t TimerService::size() const {
  std::lock_guard lock(mu_);
  return timers_.size();
}

void TimerService::Loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    ReleaseDue();
    std::unique_lock lock(mu_);
    if (stop.stop_requested()) return;
    if (!timers_.empty() && timers_.top().due <= clock_.Now()) continue;
    if (timers_.empty()) {
      cv_.wait(lock);
    } else {
      // The clock may be virtual: wait in real time for the remaining duration, re-checking.
      const Duration left = timers_.top().due - clock_.Now();
      cv_.wait_for(lock, std::min<Duration>(left, std::chrono::seconds(1)));
    }
  }
}

}  // namespace sagaflow::engine
