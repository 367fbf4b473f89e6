// Package apiclient is the Go client of mapsrv's HTTP/JSON management API
// (the /v1 endpoints of [mapsrv.NewAPI]), as etcd ships client/v3 beside
// its server: ilactl uses it, and so can an orchestrator, a CNI plugin or a
// test.
//
// Requests and results are mapsrv's own types ([mapsrv.RegisterBody],
// [mapsrv.MoveBody], [mapsrv.TaskRecord], [mapsrv.NVERecord], [ila.Domain],
// [ila.Event]), so the client and the server cannot drift apart. An error
// answer is an [*Error] that matches, with errors.Is, the sentinel mapsrv
// itself returns for the same failure ([mapsrv.ErrInvalid],
// [mapsrv.ErrNotFound], [mapsrv.ErrConflict], [mapsrv.ErrDuplicate],
// [mapsrv.ErrForbidden]) or one of this package's ([ErrUnauthorized],
// [ErrUnavailable]): code written against a [mapsrv.Service] in process
// tests the same errors over HTTP.
//
// Every call takes a context and is bounded by [Config.Timeout], except
// [Client.Watch], which streams until its context ends. [Config.Token] is
// sent as "Authorization: Bearer TOKEN".
//
// The name: mapsrv has three clients, and "client" alone would not say
// which. This one speaks the management API; regproto.Client speaks the
// registration protocol (UDP) and etcdstore.Watcher reads the store. It
// also keeps the common variable name client free at call sites.
package apiclient
