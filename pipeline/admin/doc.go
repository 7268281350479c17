// Package admin serves dwell's admin API: interactive queries of the live state (a profile's
// open visit, sessions and rules state), the partitions an instance owns and the rule set it
// runs, over HTTP on a listener of its own, with a bearer token.
//
// Any instance of a group answers for any profile: when the profile's partition is owned by
// another instance, the request is forwarded to the admin URL that instance advertises (as
// Kafka Streams routes interactive queries with application.server). Instances advertise their
// URL in their Kafka client id (pipeline.LiveConfig.AdvertisedAdminURL), so the group's
// description says which URL owns which partition; the owners are cached, and read again when
// the cache is older than Config.OwnersMaxAge, when it names no owner or this instance itself,
// and when the supposed owner answers that it owns the partition no more (a rebalance in
// between). A forwarded request carries HeaderForwarded and is never forwarded again.
//
// Invariants: the server reads no state itself; every answer comes from the worker that owns
// the partition (pipeline.Live.Profile). The server's goroutines are owned by Run, which
// returns once they have all ended.
package admin
