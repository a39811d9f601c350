"""The toy geometry: test functions with analytic Hessians, small networks fitted to them, decision boundaries."""
