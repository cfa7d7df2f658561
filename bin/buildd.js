#!/usr/bin/env node
'use strict';
require('../dist/buildd/main.js');
