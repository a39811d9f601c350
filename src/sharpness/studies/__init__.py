"""Running studies: which study a page shows (`registry`), grid files (`store`), and the orchestrators
(`sweep`, `cpu_study`, `campaign`, `campaign_import`) that train and measure grids of runs."""
