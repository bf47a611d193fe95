#include "group_committer.h"

#include <algorithm>
#include <exception>
#include <utility>

namespace sagaflow::adapters::sql {

namespace {

thread_local GroupCommitter* current_committer = nullptr;

// Runs a request's callback; an exception from it must not end the committer thread.
void Complete(WriteRequest& request, const Status& status, const InstanceId& id) {
  try {
    if (request.create) {
      if (status.ok()) {
        request.create_done(id);
      } else {
        request.create_done(status);
      }
    } else {
      request.write_done(status);
    }
  } catch (...) {
    // Callbacks must not throw (SociStateStore's contract); nothing sensible is left to do.
  }
}

}  // namespace

GroupCommitter::GroupCommitter(DatabaseConfig config, std::unique_ptr<Connection> writer)
    : config_(std::move(config)),
      max_batch_(std::max<std::size_t>(1, config_.options.max_batch)),
      writer_(std::move(writer)) {
  thread_ = std::thread([this] { Run(); });
  std::lock_guard lock(mu_);
  committer_id_ = thread_.get_id();
}

GroupCommitter::~GroupCommitter() { Stop(); }

void GroupCommitter::Submit(WriteRequest request, bool inline_if_committer) {
  {
    std::unique_lock lock(mu_);
    if (!stopping_) {
      if (!(inline_if_committer && std::this_thread::get_id() == committer_id_)) {
        queue_.push_back(std::move(request));
        lock.unlock();
        wake_.notify_one();
        return;
      }
    } else {
      lock.unlock();
      Complete(request, FailedPrecondition("the store is stopped: " + config_.display), {});
      return;
    }
  }
  // On the committer thread, between batches: the writer connection is free.
  std::vector<WriteRequest> alone;
  alone.push_back(std::move(request));
  Process(alone);
}

void GroupCommitter::Stop() noexcept {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  std::call_once(joined_, [this] {
    if (!thread_.joinable()) return;
    if (std::this_thread::get_id() == thread_.get_id()) {
      thread_.detach();  // called from a callback: the thread ends after the drain
    } else {
      thread_.join();
    }
  });
}

GroupCommitStats GroupCommitter::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

GroupCommitter* GroupCommitter::Current() { return current_committer; }

void GroupCommitter::Run() {
  current_committer = this;
  std::vector<WriteRequest> batch;
  while (true) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping, and drained
      const std::size_t n = std::min(max_batch_, queue_.size());
      batch.clear();
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    Process(batch);
    batch.clear();  // the callbacks and what they hold go now, not with the next batch
  }
  Disconnect();
}

void GroupCommitter::Process(std::vector<WriteRequest>& batch) {
  std::vector<WriteRequest*> all;
  all.reserve(batch.size());
  for (WriteRequest& r : batch) all.push_back(&r);
  std::vector<ItemOutcome> outcomes(batch.size());
  std::uint64_t commits = 0;
  std::uint64_t failed = 0;

  bool retry_alone = false;
  Status status = ApplyInOneTransaction(all, outcomes, retry_alone);
  if (status.ok()) {
    ++commits;
  } else if (retry_alone && batch.size() > 1) {
    // One request made the database raise an error and the transaction is gone. Isolate it:
    // every request in its own transaction.
    for (std::size_t i = 0; i < batch.size(); ++i) {
      std::vector<WriteRequest*> one{&batch[i]};
      std::vector<ItemOutcome> one_outcome(1);
      bool ignored = false;
      Status alone = ApplyInOneTransaction(one, one_outcome, ignored);
      if (alone.ok()) {
        ++commits;
        outcomes[i] = std::move(one_outcome[0]);
      } else {
        ++failed;
        outcomes[i].status = std::move(alone);
      }
    }
  } else {
    for (ItemOutcome& o : outcomes) o.status = status;
    failed = batch.size();
  }

  {
    std::lock_guard lock(mu_);
    ++stats_.batches;
    stats_.commits += commits;
    stats_.items_failed += failed;
    stats_.largest_batch = std::max<std::uint64_t>(stats_.largest_batch, batch.size());
    for (const ItemOutcome& o : outcomes) {
      if (o.status.ok()) {
        ++stats_.items_written;
      } else if (o.status.code() != StatusCode::kUnavailable &&
                 o.status.code() != StatusCode::kInternal) {
        ++stats_.items_refused;
      }
    }
  }
  // Durable (or failed) before any callback runs; callbacks run in submission order.
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Complete(batch[i], outcomes[i].status, outcomes[i].id);
  }
}

Status GroupCommitter::EnsureConnected() {
  if (writer_ && !writer_->Healthy()) Disconnect();
  if (!writer_) {
    Result<std::unique_ptr<Connection>> opened = Connection::Open(config_);
    if (!opened.ok()) return opened.status();
    writer_ = std::move(*opened);
  }
  if (!rows_ && !bulk_) {
    try {
      if (writer_->backend() == Backend::kPostgres) {
        bulk_ = std::make_unique<BulkInstanceWriter>(*writer_);
      } else {
        rows_ = std::make_unique<InstanceWriter>(*writer_);
      }
    } catch (const std::exception& e) {
      Status status =
          ErrorStatus(e, config_.display + ": preparing the write statements", writer_.get());
      Disconnect();
      return status;
    }
  }
  return Status::Ok();
}

void GroupCommitter::Disconnect() noexcept {
  try {
    rows_.reset();
    bulk_.reset();
    writer_.reset();
  } catch (...) {
    // Closing a connection that is gone; nothing to do.
  }
}

Status GroupCommitter::ApplyInOneTransaction(std::vector<WriteRequest*>& batch,
                                             std::vector<ItemOutcome>& out, bool& retry_alone) {
  retry_alone = false;
  Status connected = EnsureConnected();
  if (!connected.ok()) {
    return Unavailable("writing " + std::to_string(batch.size()) +
                       " instance(s): " + connected.message());
  }
  std::vector<WriteItem> items;
  items.reserve(batch.size());
  for (const WriteRequest* r : batch) {
    items.push_back(
        WriteItem{r->record, r->create, &r->executions, r->context_changed, r->header,
                  r->stored_executions, r->encoded});
  }
  const char* step = "beginning the transaction";
  bool in_statements = false;
  try {
    writer_->BeginWrite();
    step = "writing instances";
    in_statements = true;
    if (bulk_) {
      bulk_->Apply(items, out);
    } else {
      rows_->Apply(items, out);
    }
    in_statements = false;
    step = "committing";
    writer_->Commit();
    return Status::Ok();
  } catch (const std::exception& e) {
    std::string what = config_.display + ": " + step;
    if (batch.size() == 1) what += " (instance " + batch[0]->record->id.str() + ")";
    ErrorInfo info = DescribeError(e, what, writer_.get());
    writer_->RollbackQuietly();
    retry_alone = in_statements && info.item_specific;
    // Statements may be left mid-execution; a fresh connection is the simple safe state.
    Disconnect();
    if (info.status.code() == StatusCode::kInternal && !retry_alone) {
      // A commit the database refused is not the data's fault: let the caller retry.
      return Unavailable(info.status.message());
    }
    return info.status;
  }
}

}  // namespace sagaflow::adapters::sql
