-- sql/usage_tracking--1.0--1.1.sql — upgrade from 1.0 to 1.1.
-- Unreleased: changes to SQL objects collect here until 1.1 is released,
-- then this file is frozen like every released script.  The 1.1 install
-- script is usage_tracking--1.0.sql followed by this file.
\echo Use "ALTER EXTENSION usage_tracking UPDATE TO '1.1'" to load this file. \quit

