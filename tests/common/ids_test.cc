#include "sagaflow/common/ids.h"

#include <gtest/gtest.h>

#include <set>
#include <string_view>
#include <string>
#include <thread>
#include <vector>

namespace sagaflow {
namespace {

bool IsCrockford(char c) {
  return std::string_view("0123456789ABCDEFGHJKMNPQRSTVWXYZ").find(c) != std::string_view::npos;
}

TEST(InstanceIdTest, IsAUniqueTimeOrderedUlid) {
  std::set<std::string> seen;
  std::string previous;
  for (int i = 0; i < 10'000; ++i) {
    const std::string id = NewInstanceId().str();
    ASSERT_EQ(id.size(), 26u);
    for (char c : id) ASSERT_TRUE(IsCrockford(c)) << id;
    EXPECT_TRUE(seen.insert(id).second) << "repeated id " << id;
    // The first 10 characters are the millisecond: never earlier than the previous id's.
    if (!previous.empty()) {
      EXPECT_GE(id.substr(0, 10), previous.substr(0, 10));
    }
    previous = id;
  }
}

TEST(InstanceIdTest, IdsMadeOnOneThreadShareALane) {
  const std::size_t lane = InstanceIdLane(NewInstanceId());
  EXPECT_LT(lane, kIdLanes);
  for (int i = 0; i < 1'000; ++i) EXPECT_EQ(InstanceIdLane(NewInstanceId()), lane);
}

TEST(InstanceIdTest, ThreadsGetDifferentLanes) {
  // Lanes are handed out in turn: kIdLanes threads in a row all get different ones.
  std::vector<std::size_t> lanes(kIdLanes);
  for (std::size_t i = 0; i < kIdLanes; ++i) {
    std::thread([&lanes, i] { lanes[i] = InstanceIdLane(NewInstanceId()); }).join();
  }
  EXPECT_EQ(std::set<std::size_t>(lanes.begin(), lanes.end()).size(), kIdLanes);
}

TEST(InstanceIdTest, OtherIdsSpreadOverTheLanes) {
  std::set<std::size_t> lanes;
  for (int i = 0; i < 1'000; ++i) {
    const std::size_t lane = InstanceIdLane(InstanceId("order-" + std::to_string(i)));
    EXPECT_LT(lane, kIdLanes);
    lanes.insert(lane);
  }
  EXPECT_EQ(lanes.size(), kIdLanes);
  // A 26-character id whose last character is not Crockford base32 is hashed too.
  EXPECT_LT(InstanceIdLane(InstanceId("01JTESTINSTANCE0000000000u")), kIdLanes);
}

}  // namespace
}  // namespace sagaflow
