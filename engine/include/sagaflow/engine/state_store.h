#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "sagaflow/common/status.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/tasks/task_error.h"

namespace sagaflow::engine {

// A flow definition as stored: instances refer to it by (name, hash).
struct DefinitionRecord {
  std::string name;
  std::string version;
  std::string hash;
  std::string content;
  TimePoint created_at{};
};

// The header fields of an instance that a batch may change besides its cursor.
struct InstanceHeader {
  RunStatus status = RunStatus::kRunning;
  std::optional<TaskFailure> error;
  std::string error_code;
  std::string error_message;
  std::optional<TimePoint> ended_at;
  TimePoint lease_until{};
  // The instance parks: after the owner check the stored owner becomes "" (no process holds
  // it) and lease_until is its wake time, from which any process's ClaimDue may take it
  // (TimePoint::max() when only an event wakes it, which ClaimInstance delivers).
  bool release_owner = false;
};

// What a later write changes in an execution already stored: its progress.
struct ExecutionProgress {
  int id = 0;
  int attempts = 0;
  RunStatus status = RunStatus::kRunning;
  std::optional<RunStatus> compensation_status;
  bool superseded = false;
  std::vector<int> retry_counts;
  std::optional<TimePoint> retry_at;
  std::optional<TimePoint> deadline_at;
  SharedJson output;
  std::optional<TaskFailure> error;
  std::optional<TimePoint> ended_at;

  static ExecutionProgress Of(const StateExecution& e);
  void ApplyTo(StateExecution& e) const&;
  void ApplyTo(StateExecution& e) &&;  // moves what it holds into `e`
};

// An attempt of an async step waiting to be handed to the TaskDispatcher: a row of the store's
// outbox. The engine writes it in the batch (or the create) that decides the dispatch when its
// dispatcher is durable, hands the delivery over once that is stored, and removes the row once
// the dispatcher has taken it. A row left behind (the process died in between, or the
// dispatcher refused) is handed over by whichever process claims it when it is due
// (StateStore::ClaimDispatches): a dispatch is never lost with a process, and a reply never
// comes for a step that is not stored. It is keyed by (instance, execution, attempt).
struct DispatchRecord {
  TaskDelivery delivery;
  TimePoint due_at{};  // when any process may hand it over (again) if it is still stored
};

// A dispatch row's key.
struct DispatchKey {
  InstanceId instance;
  int execution = -1;
  int attempt = 0;
  friend bool operator==(const DispatchKey&, const DispatchKey&) = default;
  friend auto operator<=>(const DispatchKey&, const DispatchKey&) = default;
};

// What a claim of due dispatch rows took (StateStore::ClaimDispatches).
struct ClaimedDispatches {
  std::vector<DispatchRecord> rows;  // earliest due first
  std::vector<std::pair<DispatchKey, Status>> corrupt;
};

// One step's changes to one instance, as a value: the store applies all of it or none, and
// may keep the batch (it owns everything it holds, so the caller may change its own record as
// soon as the call returns).
//
// Every batch stores the cursor, updated_at and compensation_status. A batch with `header` also
// stores the header (the engine sets one at the first write of a run or an operation, at the
// end of one, and when the instance parks; in between those fields do not change and the
// lease is renewed by RenewLeases, so a step's batch leaves the indexed columns alone).
// started_at is the instance's creation and is stored by the create alone, like its identity.
// Whether the instance is finished (its cursor's phase) may change only in a batch with
// `header`: stores may index it with the header. The owner is never written here: it is
// checked (kFailedPrecondition, "lease lost", when the stored owner differs).
//
// Executions: `new_executions` are written whole (identity, input and progress); writing one
// the store has already (a batch applied once more after its outcome was lost) keeps the
// stored identity and input and takes the progress. `progress` changes executions stored by
// earlier batches; one the store does not have is refused (kInvalidArgument).
//
// The context is written whenever the step changed it (a task's Output, an operation's patch,
// the end of a run), so that the stored context is always the one the cursor continues
// from: an instance taken over after a crash resumes from what is stored, with nothing to
// re-evaluate (re-rendering Output could issue new `$Sequence` values). `context` is the whole
// context after the step; with it, `changed_keys`, when set, names the only top-level keys in
// which it differs from the context stored last (one task's Output; a key the Output could not
// render is missing from `context` and was missing before), so that a store may apply those
// instead of the whole. It points into the flow's definition, which outlives every batch.
struct WriteBatch {
  InstanceId instance;
  std::string owner;  // the writer: must be the stored owner
  TimePoint updated_at{};
  std::optional<RunStatus> compensation_status;
  Cursor cursor;
  std::optional<InstanceHeader> header;
  std::vector<StateExecution> new_executions;
  std::vector<ExecutionProgress> progress;
  std::optional<SharedJson> context;
  const ContextKeys* changed_keys = nullptr;
  std::vector<DispatchRecord> dispatches;
  std::vector<InstanceRecord> children;

  // The batch that writes `record` as it is: its cursor, the executions `executions` lists
  // (all as new_executions), its context when `context_changed`, and its header with
  // `header`.
  static WriteBatch Of(const InstanceRecord& record, const ExecutionIds& executions,
                       bool context_changed, bool header = true);
  // This batch parks the instance (see InstanceHeader::release_owner); it writes the header.
  WriteBatch& Parking(const InstanceRecord& record);
};

// The header fields of `record`, as a batch stores them.
InstanceHeader HeaderOf(const InstanceRecord& record);

struct InstanceFilter {
  std::optional<RunStatus> status;
  std::string flow_name;  // "" for all
  std::size_t limit = 100;
};

struct InstanceSummary {
  InstanceId id;
  std::string flow_name;
  std::string flow_version;
  std::string business_key;
  RunStatus status = RunStatus::kRunning;
  std::optional<RunStatus> compensation_status;
  TimePoint started_at{};
  std::optional<TimePoint> ended_at;
  std::string owner;
  TimePoint lease_until{};
  // Whether its cursor is finished (InstanceRecord::finished()): an unfinished instance with no
  // owner is parked, and lease_until is its wake time.
  bool finished = false;
};

// What remains to recover: unfinished instances (cursor not finished) and their leases.
struct UnfinishedSummary {
  std::size_t unfinished = 0;
  // Unfinished instances whose lease, held by an owner other than the one asking, is still
  // live, and the earliest time one of those leases expires.
  std::size_t leased_elsewhere = 0;
  std::optional<TimePoint> next_expiry;
  // Parked instances (no owner) not due yet, and the earliest wake time among them (none when
  // every parked instance waits for an event rather than a time).
  std::size_t parked = 0;
  std::optional<TimePoint> next_wake;
};

// Where instances live. Every method is durable when it returns OK, and Create and Apply when
// they complete OK (as durable as the adapter promises); thread-safe; and turns the backend's exceptions into Statuses (kUnavailable when
// the backend refused or went away: the caller retries; nothing half-written is visible).
//
// Leases. Every instance records the engine process that runs it (`owner`) and until when
// (`lease_until`). Apply refuses a batch with kFailedPrecondition ("lease lost") when the
// stored owner differs from batch.owner, so that a process whose instance was taken over
// cannot write over the new owner's progress; a batch with `header` stores its lease_until as
// given. An instance is *unfinished* while its cursor's phase is not
// kFinished.
//
// Durable timers. A parked instance (sleeping in a Wait or a retry's backoff, or waiting for
// an event) has no owner ("") and its lease_until is its wake time: leases and timers are one
// column, so that ClaimDue takes both the instances of a process that died and the timers that
// came due, with one claim that only one process wins.
class StateStore {
 public:
  using WriteDone = std::function<void(Status)>;
  using CreateDone = std::function<void(Result<InstanceId>)>;

  virtual ~StateStore() = default;

  // Stores a definition; storing the same (name, hash) again is OK and changes nothing.
  virtual Status SaveDefinition(const DefinitionRecord& def) = 0;
  virtual Result<DefinitionRecord> LoadDefinition(const std::string& name,
                                                  const std::string& hash) = 0;

  // Creates an instance. When `record.business_key` is not empty and an instance of the same
  // flow already uses it: the outcome is that instance's id if its input equals record.input
  // (the start is a repeat), kConflict otherwise. It is record.id when the instance was
  // created. The store reads `record` during the call only.
  //
  // Completion: `done` is called exactly once, when the outcome is durable (or refused): maybe
  // before Create returns, on the calling thread, maybe later on a thread of the store. It must
  // not throw and should not block long (a store may complete many calls on one thread).
  //
  // `dispatches` (outbox rows of the new instance, its first step's) are stored with it,
  // atomically, when the instance is created; nothing of them when the outcome is another
  // instance or a refusal.
  virtual void Create(const InstanceRecord& record, std::span<const DispatchRecord> dispatches,
                      CreateDone done) = 0;
  void Create(const InstanceRecord& record, CreateDone done) {
    Create(record, {}, std::move(done));
  }

  // Applies `batch` atomically (see WriteBatch), completing as Create does. The store takes
  // what it keeps of `batch` during the call: it may leave it moved from, or holding what the
  // batch replaced, and never touches it after the call returns. A caller may fill the same
  // batch again for its next write (its buffers are then reused, not allocated again).
  virtual void Apply(WriteBatch& batch, WriteDone done) = 0;
  void Apply(WriteBatch&& batch, WriteDone done) { Apply(batch, std::move(done)); }

  // Create and Apply, waiting for the outcome. They may be called from a completion callback:
  // a store that completes on its own threads applies such a call at once there.
  Result<InstanceId> CreateInstance(const InstanceRecord& record,
                                    std::span<const DispatchRecord> dispatches = {});
  Status Write(WriteBatch batch);

  virtual Result<InstanceRecord> LoadInstance(const InstanceId& id) = 0;

  // Many instances at once (recovery loads every instance it claimed): out[i] is what
  // LoadInstance(ids[i]) returns, its record or its own error (kNotFound, a corrupt column).
  // Each record is read consistently with its executions; records of different ids may come
  // from different transactions. An error of the whole call (the backend refused) is returned
  // instead of the vector. This form loads one by one; an adapter reads many per query.
  virtual Result<std::vector<Result<InstanceRecord>>> LoadInstances(
      const std::vector<InstanceId>& ids) {
    std::vector<Result<InstanceRecord>> out;
    out.reserve(ids.size());
    for (const InstanceId& id : ids) out.push_back(LoadInstance(id));
    return out;
  }

  // Newest first.
  virtual Result<std::vector<InstanceSummary>> ListInstances(const InstanceFilter& filter) = 0;

  // --- Leases and recovery --------------------------------------------------------------------

  // Claims up to `limit` unfinished instances that are due (lease_until <= now: the lease of
  // the process running it expired, or, parked, its wake time came), oldest first: sets their
  // owner and lease_until. Returns their ids. Two processes claiming at once never get the same
  // instance, so a due timer fires in one process only.
  virtual Result<std::vector<InstanceId>> ClaimDue(const std::string& owner, TimePoint now,
                                                       TimePoint lease_until,
                                                       std::size_t limit) = 0;

  // Takes the lease of one instance for `owner` (an operation on it, a resume, an event for a
  // parked instance): kNotFound when there is no such instance, kFailedPrecondition when
  // another owner's lease is live at `now` (lease_until > now). A parked instance (owner "")
  // may be taken at any time. Taking a lease `owner` already holds renews it. Returns the
  // record as stored after the claim.
  virtual Result<InstanceRecord> ClaimInstance(const InstanceId& id, const std::string& owner,
                                               TimePoint now, TimePoint lease_until) = 0;

  // Takes the lease of one instance that no process is stepping, for an event that came for
  // it (a timer fired from memory, a task's reply): it is parked (owner "") or its lease
  // expired at `now`. Unlike ClaimInstance it refuses a lease `owner` itself holds
  // (kFailedPrecondition): in that process the instance is being run, or is about to be, by a
  // recovery pass that claimed it with ClaimDue, and that run sees what the event says; taking
  // it a second time would run it twice. Otherwise as ClaimInstance.
  virtual Result<InstanceRecord> ClaimIdle(const InstanceId& id, const std::string& owner,
                                           TimePoint now, TimePoint lease_until) = 0;

  // Extends to `lease_until` every lease `owner` still holds at `now` on an unfinished instance
  // (lease_until > now) that expires at `renew_before` or earlier; later ones have time left
  // and are left alone (most instances end long before their first lease does). A lease that
  // expired or was released (ClaimInstance with lease_until = now) is not revived: another
  // process may be claiming it. Returns how many it extended.
  virtual Result<std::size_t> RenewLeases(const std::string& owner, TimePoint now,
                                          TimePoint renew_before, TimePoint lease_until) = 0;

  // Counts unfinished instances, for `recover` to know whether to wait for live leases.
  virtual Result<UnfinishedSummary> Unfinished(const std::string& owner, TimePoint now) = 0;

  // --- The outbox (see DispatchRecord) --------------------------------------------------------

  // Claims up to `limit` dispatch rows that are due (due_at <= now), earliest first: sets their
  // due_at to `next_due` and returns them as stored then. Two processes claiming at once never
  // get the same row, so that a row left behind is handed over by one process (again at
  // next_due if that one dies too: delivery is at least once). A row the store cannot decode
  // is claimed too and comes in `corrupt` with its error (kInternal naming it), so that it
  // holds up no other.
  virtual Result<ClaimedDispatches> ClaimDispatches(TimePoint now, TimePoint next_due,
                                                    std::size_t limit) = 0;

  // Removes the rows `keys` (handed over); keys with no row are left alone.
  virtual Status RemoveDispatches(std::span<const DispatchKey> keys) = 0;

  // Rows stored for `instance` (in key order), for tests and operators.
  virtual Result<std::vector<DispatchRecord>> ListDispatches(const InstanceId& instance) = 0;
};

}  // namespace sagaflow::engine
