#include "group_committer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <utility>

namespace sagaflow::adapters::sql {

namespace {

thread_local GroupCommitter* current_committer = nullptr;

// Runs a request's callback; an exception from it must not end the committer thread.
void Complete(WriteRequest& request, const Status& status, const InstanceId& id) {
  try {
    if (request.item.create) {
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

WalFile::~WalFile() { ::close(fd); }

GroupCommitter::GroupCommitter(DatabaseConfig config, std::unique_ptr<Connection> writer)
    : config_(std::move(config)),
      max_batch_(std::max<std::size_t>(1, config_.options.max_batch)),
      flush_wal_(config_.backend == Backend::kSqlite &&
                 config_.options.durability == SociStoreOptions::Durability::kFull),
      writer_(std::move(writer)) {
  std::lock_guard lock(mu_);
  completer_ = std::thread([this] { RunCompleter(); });
  completer_id_ = completer_.get_id();
  thread_ = std::thread([this] { Run(); });
  committer_id_ = thread_.get_id();
}

GroupCommitter::~GroupCommitter() { Stop(); }

void GroupCommitter::Submit(WriteRequest request, bool inline_if_committer) {
  const std::thread::id self = std::this_thread::get_id();
  std::unique_lock lock(mu_);
  if (stopping_) {
    lock.unlock();
    Complete(request, FailedPrecondition("the store is stopped: " + config_.display), {});
    return;
  }
  if (inline_if_committer && self == committer_id_) {
    // On the committer thread, between batches: the writer connection is free.
    lock.unlock();
    std::vector<WriteRequest> alone;
    alone.push_back(std::move(request));
    alone.back().direct = true;
    Process(alone);
    return;
  }
  const bool direct = inline_if_committer && self == completer_id_;
  request.direct = direct;
  queue_.push_back(std::move(request));
  if (direct) ++direct_queued_;
  lock.unlock();
  wake_.notify_one();
  if (direct) {
    // The committer may be waiting in Hand for this very thread: wake it to apply the write.
    { std::lock_guard done_lock(done_mu_); }
    done_cv_.notify_all();
  }
}

void GroupCommitter::Stop() noexcept {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  std::call_once(joined_, [this] {
    if (!thread_.joinable()) return;
    const std::thread::id self = std::this_thread::get_id();
    if (self == thread_.get_id() || self == completer_id_) {
      thread_.detach();  // called from a callback: the threads end after the drain
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
        if (queue_.front().direct) --direct_queued_;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    Process(batch);
    batch.clear();
  }
  {
    std::lock_guard lock(done_mu_);
    completer_stopping_ = true;
  }
  done_cv_.notify_all();
  completer_.join();  // after it ran every callback
  wal_.reset();
  Disconnect();
}

void GroupCommitter::RunCompleter() {
  current_committer = this;
  while (true) {
    std::deque<Done> work;
    {
      std::unique_lock lock(done_mu_);
      done_cv_.wait(lock, [this] { return completer_stopping_ || !done_.empty(); });
      if (done_.empty()) break;  // stopping, and drained
      work.swap(done_);
    }
    done_cv_.notify_all();  // the committer may hand the next batch
    // One flush covers every batch taken (and any committed since).
    std::vector<std::pair<const WalFile*, Status>> flushed;
    for (Done& d : work) {
      if (!d.wal) continue;
      auto it = std::find_if(flushed.begin(), flushed.end(),
                             [&](const auto& f) { return f.first == d.wal.get(); });
      if (it == flushed.end()) {
        flushed.emplace_back(d.wal.get(), Flush(*d.wal));
        it = flushed.end() - 1;
      }
      if (it->second.ok()) continue;
      for (ItemOutcome& o : d.outcomes) {
        if (o.status.ok()) o.status = it->second;
      }
    }
    // Durable (or failed) before any callback runs; callbacks run in submission order.
    for (Done& d : work) {
      for (std::size_t i = 0; i < d.requests.size(); ++i) {
        Complete(d.requests[i], d.outcomes[i].status, d.outcomes[i].id);
      }
    }
  }
}

void GroupCommitter::Hand(Done done) {
  while (true) {
    {
      std::unique_lock lock(done_mu_);
      done_cv_.wait(lock, [this] { return done_.empty() || direct_queued_.load() > 0; });
      if (done_.empty()) {
        done_.push_back(std::move(done));
        lock.unlock();
        done_cv_.notify_all();
        return;
      }
    }
    // The completer is in a callback waiting for a write of its own, queued behind the batch
    // this thread is handing over: apply that write now (the connection is free).
    std::vector<WriteRequest> direct;
    {
      std::lock_guard lock(mu_);
      for (auto it = queue_.begin(); it != queue_.end();) {
        if (it->direct) {
          direct.push_back(std::move(*it));
          it = queue_.erase(it);
          --direct_queued_;
        } else {
          ++it;
        }
      }
    }
    if (!direct.empty()) Process(direct);
  }
}

Result<std::shared_ptr<WalFile>> GroupCommitter::CurrentWal() {
  const std::string path = config_.connect_string + "-wal";
  struct stat now {};
  if (::stat(path.c_str(), &now) != 0) {
    if (errno == ENOENT && !writer_) {
      // The batch's last item closed the connection after the others had committed (a refused
      // item, isolated alone). The last connection to close checkpoints the WAL into the
      // database, syncs it (every connection runs synchronous NORMAL or FULL) and only then
      // deletes the file: those commits are already durable, and nothing is left to flush.
      return std::shared_ptr<WalFile>();
    }
    return Unavailable(config_.display + ": cannot find the WAL file " + path + " to flush: " +
                       std::strerror(errno));
  }
  if (wal_) {
    struct stat open {};
    if (::fstat(wal_->fd, &open) == 0 && open.st_dev == now.st_dev && open.st_ino == now.st_ino) {
      return wal_;
    }
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Unavailable(config_.display + ": cannot open the WAL file " + path + " to flush: " +
                       std::strerror(errno));
  }
  auto wal = std::make_shared<WalFile>(fd, path);
  // A new WAL file: its name in the directory must be durable too.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0 || ::fsync(dir_fd) != 0) {
    const int error = errno;
    if (dir_fd >= 0) ::close(dir_fd);
    return Unavailable(config_.display + ": cannot flush the directory " + dir + ": " +
                       std::strerror(error));
  }
  ::close(dir_fd);
  wal_ = wal;
  return wal;
}

Status GroupCommitter::Flush(const WalFile& wal) const {
  if (::fdatasync(wal.fd) != 0) {
    return Unavailable(config_.display + ": flushing the WAL file " + wal.path +
                       " failed: " + std::strerror(errno));
  }
  return Status::Ok();
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
  Done done{std::move(batch), std::move(outcomes), nullptr};
  if (flush_wal_ && commits > 0) {
    Result<std::shared_ptr<WalFile>> wal = CurrentWal();
    if (wal.ok()) {
      done.wal = std::move(*wal);
    } else {
      for (ItemOutcome& o : done.outcomes) {
        if (o.status.ok()) o.status = wal.status();
      }
    }
  }
  // Direct requests complete here, flushed first; the others go to the completer.
  if (std::any_of(done.requests.begin(), done.requests.end(),
                  [](const WriteRequest& r) { return r.direct; })) {
    const Status flushed = done.wal ? Flush(*done.wal) : Status::Ok();
    Done rest{{}, {}, done.wal};
    for (std::size_t i = 0; i < done.requests.size(); ++i) {
      if (!done.requests[i].direct) {
        rest.requests.push_back(std::move(done.requests[i]));
        rest.outcomes.push_back(std::move(done.outcomes[i]));
        continue;
      }
      const ItemOutcome& o = done.outcomes[i];
      Complete(done.requests[i], o.status.ok() ? flushed : o.status, o.id);
    }
    done = std::move(rest);
  }
  if (!done.requests.empty()) Hand(std::move(done));
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
        if (flush_wal_) {
          // Commits reach the WAL unflushed; the completer flushes them (see the class).
          writer_->session() << "PRAGMA synchronous = NORMAL";
        }
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
  std::vector<const WriteItem*> items;
  items.reserve(batch.size());
  for (const WriteRequest* r : batch) items.push_back(&r->item);
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
  } catch (const ItemRefused& e) {
    // One item is refused after some of it was written: roll back, and isolate it.
    writer_->RollbackQuietly();
    retry_alone = true;
    Disconnect();
    return e.status();
  } catch (const std::exception& e) {
    std::string what = config_.display + ": " + step;
    if (batch.size() == 1) what += " (instance " + batch[0]->item.id.str() + ")";
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
