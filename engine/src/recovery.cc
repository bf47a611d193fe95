#include "recovery.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sagaflow::engine {

Recovery::Recovery(StateStore& store, const Clock& clock, std::string owner, Duration lease_ttl,
                   std::size_t loaders)
    : store_(store),
      clock_(clock),
      owner_(std::move(owner)),
      lease_ttl_(lease_ttl),
      loaders_(std::max<std::size_t>(loaders, 1)) {}

Result<RecoverReport> Recovery::Pass(std::size_t limit, const Resume& resume) {
  TimePoint now = clock_.Now();
  ReleaseUnloaded(now);
  // One claim for the lot; then each is only read (it is ours until its lease expires).
  SAGAFLOW_ASSIGN_OR_RETURN(std::vector<InstanceId> ids,
                            store_.ClaimDue(owner_, now, now + lease_ttl_, limit));
  constexpr std::size_t kLoadChunk = 256;
  const std::size_t chunks = (ids.size() + kLoadChunk - 1) / kLoadChunk;
  std::vector<RecoverReport> reports(chunks);
  std::atomic<std::size_t> next{0};
  auto load_chunks = [&] {
    for (std::size_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) {
      const std::size_t begin = c * kLoadChunk;
      LoadAndResume(std::span<const InstanceId>(ids).subspan(
                        begin, std::min(kLoadChunk, ids.size() - begin)),
                    resume, reports[c]);
    }
  };
  {
    std::vector<std::jthread> helpers;
    for (std::size_t i = 1; i < std::min(loaders_, chunks); ++i) helpers.emplace_back(load_chunks);
    load_chunks();
  }
  RecoverReport report;
  report.resumed.reserve(ids.size());
  for (RecoverReport& r : reports) {
    report.resumed.insert(report.resumed.end(), std::make_move_iterator(r.resumed.begin()),
                          std::make_move_iterator(r.resumed.end()));
    report.failed.insert(report.failed.end(), std::make_move_iterator(r.failed.begin()),
                         std::make_move_iterator(r.failed.end()));
  }
  if (!report.failed.empty()) ReleaseUnloaded(clock_.Now());
  return report;
}

void Recovery::LoadAndResume(std::span<const InstanceId> chunk, const Resume& resume,
                             RecoverReport& report) {
  auto loaded = store_.LoadInstances(std::vector<InstanceId>(chunk.begin(), chunk.end()));
  if (loaded.ok() && loaded->size() != chunk.size()) {
    loaded = Internal("the store loaded " + std::to_string(loaded->size()) + " of " +
                      std::to_string(chunk.size()) + " instances asked for");
  }
  std::vector<InstanceId> unloaded;
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    const InstanceId& id = chunk[i];
    Status s = loaded.status();
    if (loaded.ok()) {
      if (!(*loaded)[i].ok()) unloaded.push_back(id);
      s = resume(id, std::move((*loaded)[i]));
    } else {
      unloaded.push_back(id);
    }
    if (s.ok()) {
      report.resumed.push_back(id);
    } else {
      report.failed.emplace_back(id, std::move(s));
    }
  }
  if (!unloaded.empty()) {
    // Claimed but not loaded: nothing runs them here, yet the lease keeper would renew their
    // leases for as long as this process lives. Given back, a later pass takes them again.
    std::lock_guard lock(mu_);
    unreleased_.insert(unreleased_.end(), unloaded.begin(), unloaded.end());
  }
}

void Recovery::ReleaseUnloaded(TimePoint now) {
  std::vector<InstanceId> ids;
  {
    std::lock_guard lock(mu_);
    ids.swap(unreleased_);
  }
  std::vector<InstanceId> kept;
  for (const InstanceId& id : ids) {
    auto released = store_.ClaimInstance(id, owner_, now, now);
    if (released.ok() || released.status().code() == StatusCode::kNotFound ||
        released.status().code() == StatusCode::kFailedPrecondition) {
      continue;  // given back, gone, or another process's already
    }
    kept.push_back(id);  // the store is away: tried again at the next pass
  }
  if (kept.empty()) return;
  spdlog::warn("could not give back the leases of {} instance(s) recovery could not load; "
               "trying again at the next pass",
               kept.size());
  std::lock_guard lock(mu_);
  unreleased_.insert(unreleased_.end(), kept.begin(), kept.end());
}

}  // namespace sagaflow::engine
