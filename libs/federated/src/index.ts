export * from './vector';
export * from './aggregation';
export * from './strategy';
export * from './transforms';
