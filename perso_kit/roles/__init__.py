"""The paper's roles of an LLM in personalization, one module each.

==================  ===========================================================================
module              role
==================  ===========================================================================
``knowledge``       the LLM as a knowledge base: structured item attributes, user profiles in
                    words, checked against the catalog
``interpreter``     the LLM as a content interpreter: item and profile text turned into vectors;
                    a content recommender and a hybrid with collaborative filtering
``ranker``          the LLM as a ranker (re-ranking candidates)
``explainer``       the LLM as an explainer of recommendations
``conversation``    conversational recommendation
``agent``           the LLM as an agent: tools, plans, traces
==================  ===========================================================================

Import the module you need, e.g. ``from perso_kit.roles import interpreter``.
"""
