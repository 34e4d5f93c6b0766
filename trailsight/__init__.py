"""trailsight: a CloudTrail archive turned into a partitioned Parquet lake, with reports and retention."""

__version__ = "0.1.0"
