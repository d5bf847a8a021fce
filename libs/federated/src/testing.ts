// @confide/federated/testing: test helpers that import vitest, kept out of the library's public API
// so that nothing in production loads a test runner.

export {
  gridContract,
  type ContractSite,
  type GridHarness,
  type Received,
} from './grid/grid-contract';
