package mapsrv

// WaitHostProbes waits for the host probes in flight (hostprobe.go).
func (s *Service) WaitHostProbes() { s.probes.Wait() }
