package locator

// IsAnnounce exposes isAnnounce to the external tests.
var IsAnnounce = isAnnounce
