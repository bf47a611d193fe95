#include "recovery.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace sagaflow::engine {

Recovery::Recovery(StateStore& store, const Clock& clock, std::string owner, Duration lease_ttl)
    : store_(store), clock_(clock), owner_(std::move(owner)), lease_ttl_(lease_ttl) {}

Result<RecoverReport> Recovery::Pass(std::size_t limit, const Resume& resume) const {
  const TimePoint now = clock_.Now();
  // One claim for the lot; then each is only read (it is ours until its lease expires).
  SAGAFLOW_ASSIGN_OR_RETURN(std::vector<InstanceId> ids,
                            store_.ClaimDue(owner_, now, now + lease_ttl_, limit));
  RecoverReport report;
  constexpr std::size_t kLoadChunk = 256;
  for (std::size_t begin = 0; begin < ids.size(); begin += kLoadChunk) {
    const std::vector<InstanceId> chunk(
        ids.begin() + static_cast<std::ptrdiff_t>(begin),
        ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), begin + kLoadChunk)));
    auto loaded = store_.LoadInstances(chunk);
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      const InstanceId& id = chunk[i];
      Status s = loaded.ok() ? resume(id, std::move((*loaded)[i])) : loaded.status();
      if (s.ok()) {
        report.resumed.push_back(id);
      } else {
        report.failed.emplace_back(id, std::move(s));
      }
    }
  }
  return report;
}

}  // namespace sagaflow::engine
