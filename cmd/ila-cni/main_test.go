package main

import (
	"testing"

	"github.com/ilamesh/ilamesh/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
