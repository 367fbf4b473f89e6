package vm

import (
	"testing"

	"github.com/ilamesh/ilamesh/internal/testutil"
)

// TestMain fails the run if a goroutine started by the tests outlives them.
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
