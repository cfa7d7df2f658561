#!/usr/bin/env node
'use strict';
require('../dist/buildctl/main.js');
